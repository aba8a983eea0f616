"""The event stream on a real Redis: what the middleware appends, in order, read back by the API
and by ``canvasflow events`` (a real subprocess), including ``--follow``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.telemetry.events import EventStream, read, stream_key
from canvasflow.workflows.telemetry.hooks import RunEvent, StepEvent
from canvasflow.workflows.telemetry.registry import add_middleware, emit, remove_middleware
from tests.harness.plugin import ROOT

pytestmark = [pytest.mark.redis]


@pytest.fixture
def stream() -> Iterator[EventStream]:
    mw = add_middleware(EventStream(maxlen=1_000))
    assert isinstance(mw, EventStream)
    yield mw
    remove_middleware(mw)


def emit_run(run_id: str, steps: tuple[str, ...] = ("0.a", "1.b")) -> None:
    emit("on_run_start", RunEvent(run_id, "wf", "1"))
    for step in steps:  # outside a task, as a client: the dispatch travels in the carrier
        dispatched = StepEvent(run_id, step, "t." + step[2:], queue="cap.demo")
        emit("on_step_dispatch", dispatched)
        emit(
            "on_step_start",
            StepEvent(run_id, step, "t." + step[2:], worker="w@h", carrier=dispatched.carrier),
        )
        emit("on_step_success", StepEvent(run_id, step, "t." + step[2:], duration=0.01, worker="w@h"))
    emit("on_run_finish", RunEvent(run_id, "wf", "1", status="succeeded", duration=0.5))


def cli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "canvasflow.workflows.cli", "events", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


EXPECTED = [
    ("run_start", None),
    ("step_dispatch", "0.a"),
    ("step_start", "0.a"),
    ("step_success", "0.a"),
    ("step_dispatch", "1.b"),
    ("step_start", "1.b"),
    ("step_success", "1.b"),
    ("run_finish", None),
]


def test_a_runs_events_come_back_in_order_with_their_content(stream: EventStream) -> None:
    mine, other = uuid.uuid4().hex, uuid.uuid4().hex
    emit_run(mine)
    emit_run(other)
    events = read(runtime().redis, runtime().settings.key_prefix, run=mine, last=None)
    assert [(e["hook"], e.get("step_id")) for e in events] == EXPECTED
    assert {e["run_id"] for e in events} == {mine}
    assert events[-1]["status"] == "succeeded" and events[-1]["duration"] == 0.5
    assert events[3]["worker"] == "w@h" and events[3]["task"] == "t.a"
    assert "carrier" not in events[1]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


def test_the_stream_is_capped(stream: EventStream) -> None:
    for _ in range(150):
        emit_run(uuid.uuid4().hex)  # 1,200 events into a stream capped at about 1,000
    length = runtime().redis.xlen(stream_key(runtime().settings.key_prefix))
    assert 1_000 <= length < 1_200


def test_the_cli_prints_a_run_and_follows_new_events(stream: EventStream) -> None:
    run = uuid.uuid4().hex
    emit_run(run, steps=("0.a",))
    done = cli("--run", run, "--json")
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert [(e["hook"], e.get("step_id")) for e in printed] == [
        ("run_start", None),
        ("step_dispatch", "0.a"),
        ("step_start", "0.a"),
        ("step_success", "0.a"),
        ("run_finish", None),
    ]

    follower = cli("--follow", "--run", run)
    try:
        for _ in range(5):  # the held events first: a process that answers is following
            assert follower.stdout is not None
            assert run in follower.stdout.readline()
        emit(
            "on_step_retry",
            StepEvent(run, "1.b", "t.b", error={"type": "Flaky", "message": "again"}, retry_in=2),
        )
        emit("on_step_start", StepEvent(uuid.uuid4().hex, "0.x", "t.x"))  # another run: not shown
        emit(
            "on_step_failure",
            StepEvent(run, "1.b", "t.b", attempt=2, error={"type": "Flaky", "message": "no"}),
        )
        lines = [follower.stdout.readline() for _ in range(2)]  # the test's timeout bounds the wait
        assert "step_retry" in lines[0] and "error=Flaky: again" in lines[0] and "retry_in=2" in lines[0]
        assert "step_failure" in lines[1] and "attempt=2" in lines[1] and run in lines[1]
    finally:
        follower.terminate()
        follower.wait(10)


def test_inside_a_task_events_wait_for_the_next_dispatch_or_the_tasks_end(stream: EventStream) -> None:
    from celery.signals import task_postrun, task_prerun

    run = uuid.uuid4().hex
    rt = runtime()

    def held() -> list[tuple[str, str | None]]:
        return [
            (e["hook"], e.get("step_id")) for e in read(rt.redis, rt.settings.key_prefix, run=run, last=None)
        ]

    task_prerun.send(sender=None, task_id="t1", task=None)
    emit("on_step_start", StepEvent(run, "0.a", "t.a"))
    emit("on_step_success", StepEvent(run, "0.a", "t.a", duration=0.01))
    assert held() == []  # held by this process
    emit("on_step_dispatch", StepEvent(run, "1.b", "t.b"))  # written before the message would be
    assert held() == [("step_start", "0.a"), ("step_success", "0.a"), ("step_dispatch", "1.b")]
    emit("on_step_start", StepEvent(run, "0.a", "t.a", attempt=2))
    task_postrun.send(sender=None, task_id="t1", task=None)
    assert held()[-1] == ("step_start", "0.a")
    emit("on_step_start", StepEvent(run, "2.c", "t.c"))  # outside a task: at once
    assert held()[-1] == ("step_start", "2.c")
    dispatched = StepEvent(run, "3.d", "t.d", at=123.0)
    emit("on_step_dispatch", dispatched)  # outside a task: carried to the worker, not written here
    assert held()[-1] == ("step_start", "2.c")
    task_prerun.send(sender=None, task_id="t2", task=None)
    emit("on_step_start", StepEvent(run, "3.d", "t.d", carrier=dict(dispatched.carrier)))
    task_postrun.send(sender=None, task_id="t2", task=None)
    assert held()[-2:] == [("step_dispatch", "3.d"), ("step_start", "3.d")]
    dispatch = read(rt.redis, rt.settings.key_prefix, run=run, last=None)[-2]
    assert dispatch["at"] == 123.0  # the dispatch's own time
