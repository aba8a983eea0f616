"""Cancel as a saga operation: ``cancel --compensate`` rolls the run back (a step still running
when it is cancelled is compensated once it completes); ``undo`` and ``compensate`` roll back
a run cancelled without compensation."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from celery import chain, group

from canvasflow.workflows import Workflow, cancel, compensate, get_run, start, undo
from canvasflow.workflows.cli.main import main
from tests.integration.saga import effects
from tests.integration.sagacheck import assert_rolled_back, new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def wait_for(log: str, *entries: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not set(entries) <= set(effects(log)):
        assert time.monotonic() < deadline, f"{entries} not in {effects(log)}"
        time.sleep(0.05)


def in_flight_saga(log: str, **options: Any) -> str:
    """a, then fast and slow in parallel (slow still running when cancelled), then after."""
    s = step_of(log)
    wf = Workflow(
        f"t.cancel.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: chain(s("a"), group(s("fast"), s("slow", sleep=2.5)), s("after")),
        **options,
    )
    run = start(wf.name)
    wait_for(log, "do:a", "do:fast")
    deadline = time.monotonic() + 30
    while get_run(run.id).step("1.h1.act").status != "running":  # slow has started
        assert time.monotonic() < deadline, get_run(run.id).step("1.h1.act")
        time.sleep(0.05)
    return run.id


def test_cancel_compensate_rolls_back_everything_including_a_step_finishing_after_it(worker, capsys):
    log = new_log()
    run_id = in_flight_saga(log)
    assert "do:slow" not in effects(log)
    assert main(["cancel", run_id, "--compensate", "--wait", "--timeout", "60", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "compensated", shown
    record = get_run(run_id)
    assert record.error["type"] == "Cancelled"
    entries = effects(log)
    assert entries.index("do:slow") < entries.index("undo:slow")  # finished after the cancel, then undone
    assert assert_rolled_back(record, log)[-1] == "a"
    assert "do:after" not in entries
    assert record.step("1.b.act").status == "skipped"


def test_cancel_compensate_with_the_revoke_policy_stops_the_running_step(worker):
    log = new_log()
    run_id = in_flight_saga(log, inflight="revoke")
    record = cancel(run_id, compensate=True).wait(60)
    assert record.status == "compensated", record.error
    assert "do:slow" not in effects(log)
    assert sorted(assert_rolled_back(record, log)) == ["a", "fast"]


def test_undo_of_a_cancelled_run_compensates_what_completed_late_too(worker):
    log = new_log()
    run_id = in_flight_saga(log)
    cancelled = cancel(run_id).wait(10)
    assert cancelled.status == "cancelled"
    wait_for(log, "do:slow")  # the running step finished after the cancel: its effect stays...
    time.sleep(0.3)
    record = undo(run_id).wait(60)
    assert record.status == "compensated", record.error  # ...until the undo
    assert sorted(assert_rolled_back(record, log)) == ["a", "fast", "slow"]
    assert "do:after" not in effects(log)


def test_compensate_of_a_cancelled_run_rolls_it_back(worker):
    log = new_log()
    s = step_of(log)
    wf = Workflow(
        f"t.cancel.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: chain(s("a"), s("b", sleep=30)),
        inflight="revoke",  # the rollback stops b instead of waiting 30 s for it
    )
    run = start(wf.name)
    deadline = time.monotonic() + 30
    while get_run(run.id).step("1.act").status != "running":  # b has started
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert cancel(run.id, compensate=False).status == "cancelled"
    record = compensate(run.id).wait(60)
    assert record.status == "compensated", record.error
    assert effects(log) == ["do:a", "undo:a"]


def test_cancel_compensate_of_a_run_with_nothing_completed_ends_cancelled(worker):
    from canvasflow.workflows import wait_signal

    wf = Workflow(f"t.cancel.{uuid.uuid4().hex[:8]}", "1", build=lambda: wait_signal("never"))
    run = start(wf.name)
    assert run.wait(20).status == "waiting"
    record = cancel(run.id, compensate=True).wait(20)
    assert record.status == "cancelled"  # nothing completed, so nothing was compensated
    assert record.error["type"] == "Cancelled"
    assert record.step("wait_signal").status == "skipped"
