"""``resume --from STEP`` runs that step and everything downstream of it again and keeps the
rest: the side-effect log shows exactly which steps ran again."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pytest
from celery import chain, group

from canvasflow.config.errors import ResumeRefused
from canvasflow.workers.demo import add, echo
from canvasflow.workflows import Workflow, cancel, get_run, resume, signal, start, wait_signal
from canvasflow.workflows.cli.main import main
from tests.integration.saga import effects
from tests.integration.sagacheck import finished, new_log, run_saga, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def done(log: str) -> Counter[str]:
    return Counter(e[3:] for e in effects(log) if e.startswith("do:"))


def test_resume_from_a_step_of_a_succeeded_run_reruns_exactly_it_and_its_downstream(worker, capsys):
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("a"), group(s("b"), s("c")), s("d")))
    assert record.status == "succeeded"
    assert list(record.graph["steps"][i]["id"] for i in range(4)) == [
        "0.act",
        "1.h0.act",
        "1.h1.act",
        "1.b.act",
    ]
    code = main(["resume", record.id, "--from", "1.h0.act", "--wait", "--timeout", "60", "--json"])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded" and shown["generation"] == 2
    assert done(log) == {"a": 1, "b": 2, "c": 1, "d": 2}  # b and what follows it, nothing else
    assert get_run(record.id).result == "d"


def test_resume_from_a_step_of_a_cancelled_run_keeps_the_steps_before_it(worker):
    log = new_log()
    s = step_of(log)
    wf = Workflow(f"t.from.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(s("a"), s("b", sleep=1), s("c")))
    run = start(wf.name)
    deadline = time.monotonic() + 20
    while get_run(run.id).step("1.act").status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancel(run.id)
    time.sleep(1.5)  # b finishes after the cancel; c never starts
    assert done(log) == {"a": 1, "b": 1}
    record = resume(run.id, from_step="1.act").wait(60)
    assert record.status == "succeeded"
    assert done(log) == {"a": 1, "b": 2, "c": 1}


def test_resume_from_refuses_what_it_does_not_support(worker):
    log = new_log()
    s = step_of(log)
    ok = run_saga(lambda: chain(s("a"), s("b")))
    with pytest.raises(ResumeRefused, match=r"no step 'nope'.*0\.act, 1\.act"):
        resume(ok.id, from_step="nope")
    with pytest.raises(
        ResumeRefused,
        match="only failed or cancelled runs \\(or stalled ones\\) can be resumed, and succeeded",
    ):
        resume(ok.id)  # a succeeded run has nothing left to do: say which step to redo
    rolled_back = run_saga(lambda: chain(s("x"), s("y", fail=True)))
    assert rolled_back.status == "compensated"
    with pytest.raises(ResumeRefused, match="compensated run was rolled back"):
        resume(rolled_back.id, from_step="0.act")
    assert get_run(ok.id).generation == 1 and get_run(rolled_back.id).status == "compensated"


def test_resume_from_before_a_signal_wait_uses_the_payload_the_run_received(worker):
    name = f"t.from.sig.{uuid.uuid4().hex[:8]}"
    wf = Workflow(name, "1", build=lambda: chain(add.s(1, 1), wait_signal("go"), echo.s()))
    run = start(wf.name)
    deadline = time.monotonic() + 20
    while get_run(run.id).status != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    signal(run.id, "go", {"ok": 1})
    assert run.wait(30).result == [{"ok": 1}]  # echo hands on its arguments
    resume(run.id, from_step="0.add")
    again = finished(run.id, timeout=30)  # a signal is applied once per run and name: not waiting again
    assert again.status == "succeeded" and again.generation == 2 and again.result == [{"ok": 1}]
