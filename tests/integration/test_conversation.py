"""The seeds' reusable steps: ``wait_for_response`` with a timeout that rolls the run back,
and ``send_signal`` as a step, so two runs converse; a signal sent twice is applied once."""

from __future__ import annotations

import uuid

import pytest
from celery import chain

from canvasflow.config.errors import RunStateError
from canvasflow.workflows import Workflow, get_run, send_signal, signal, start, wait_for_response
from canvasflow.workflows.runtime.context import runtime
from tests.integration.saga import effects, field, whoami
from tests.integration.sagacheck import assert_rolled_back, finished, new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def workflow(build, **options) -> Workflow:
    return Workflow(f"t.talk.{uuid.uuid4().hex[:8]}", "1", build=build, **options)


def test_wait_for_response_times_out_fails_the_step_and_compensates(worker):
    log = new_log()
    s = step_of(log)
    wf = workflow(lambda: chain(s("a"), wait_for_response("approval", timeout=1.5), s("b")))
    record = finished(start(wf.name).id)
    assert record.status == "compensated", record.error
    assert record.error["type"] == "DeadlineExceeded"
    assert record.error["message"].startswith("response:")
    waited = record.step("1.wait_signal")
    assert waited.status == "failed" and waited.error["type"] == "DeadlineExceeded"
    assert record.step("2.act").status == "skipped"
    assert assert_rolled_back(record, log) == ["a"]
    events = runtime().store.events(record.id)
    failed = [e for e in events if e["event"] == "step.failed"]
    assert failed and failed[0]["data"]["error"]["type"] == "DeadlineExceeded"  # journaled with its reason
    with pytest.raises(RunStateError):
        signal(record.id, "approval", {"ok": True})  # too late: the run is over


def test_a_response_in_time_completes_the_wait(worker):
    wf = workflow(lambda: chain(wait_for_response("approval", timeout=30), field.s("ok")))
    run = start(wf.name)
    assert run.wait(20).status == "waiting"
    signal(run.id, "approval", {"ok": "yes"})
    record = finished(run.id)
    assert record.status == "succeeded" and record.result == "yes"


def test_two_runs_converse_with_send_signal_and_a_signal_sent_twice_is_applied_once(worker):
    log = new_log()
    s = step_of(log)
    # the responder waits for a ping, answers to the run that asked, then goes on
    responder = workflow(
        lambda: chain(
            wait_for_response("ping", timeout=30),
            field.s("reply_to"),
            send_signal(None, "pong", {"answer": 42}),
            s("responded"),
        )
    )
    b = start(responder.name)
    assert b.wait(20).status == "waiting"
    # the asker pings (twice: the second is applied once, i.e. not at all) and waits for the pong
    asker = workflow(
        lambda: chain(
            whoami.s(question="six times seven?"),
            send_signal(b.id, "ping"),
            send_signal(b.id, "ping", {"reply_to": "nobody", "question": "again?"}),
            wait_for_response("pong", timeout=30),
            field.s("answer"),
        )
    )
    a = start(asker.name)
    a_record, b_record = finished(a.id), finished(b.id)
    assert a_record.status == "succeeded", a_record.error
    assert b_record.status == "succeeded", b_record.error
    assert a_record.result == 42
    assert b_record.step("0.wait_signal").result == {"reply_to": a.id, "question": "six times seven?"}
    assert a_record.step("1.send_signal").result == {"run_id": b.id, "name": "ping", "applied": True}
    assert a_record.step("2.send_signal").result == {"run_id": b.id, "name": "ping", "applied": False}
    assert b_record.step("2.send_signal").result == {"run_id": a.id, "name": "pong", "applied": True}
    assert effects(log) == ["do:responded"]
    assert [e["event"] for e in runtime().store.events(b.id)].count("run.signal") == 1
    assert get_run(a.id).step("3.wait_signal").result == {"answer": 42}
