"""Deadlines, each journaled with its reason (``DeadlineExceeded``) and followed by the
rollback: ``schedule_to_start`` (no worker consumes the step's queue), ``start_to_close``
(a step that sleeps past it, retried once), and a run ``timeout``."""

from __future__ import annotations

import time
import uuid

import pytest
from celery import chain

from canvasflow.config.errors import DefinitionError
from canvasflow.workflows import Workflow, get_run, start
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.store.records import RunRecord
from tests.integration.saga import act, bounded, effects
from tests.integration.sagacheck import assert_rolled_back, finished, new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def run(build, **options) -> RunRecord:
    wf = Workflow(f"t.deadline.{uuid.uuid4().hex[:8]}", "1", build=build, **options)
    return finished(start(wf.name).id)


def journaled_reason(run_id: str) -> dict:
    (event,) = [e for e in runtime().store.events(run_id) if e["event"] == "run.compensating"]
    return event["data"]


def test_schedule_to_start_fails_a_step_no_worker_picks_up_and_rolls_back(worker):
    log = new_log()
    s = step_of(log)
    nobody = f"cap.nobody.{uuid.uuid4().hex[:6]}"  # a queue no worker consumes
    record = run(
        lambda: chain(
            s("a"),
            act.s(label="stuck", log=log).set(queue=nobody, schedule_to_start=1.5),
            s("after"),
        )
    )
    assert record.status == "compensated", record.error
    assert record.error["type"] == "DeadlineExceeded"
    assert record.error["message"].startswith("schedule_to_start:")
    assert journaled_reason(record.id)["type"] == "DeadlineExceeded"
    stuck = record.step("1.act")
    assert stuck.status == "failed" and stuck.error["message"].startswith("schedule_to_start:")
    assert record.step("2.act").status == "skipped"
    assert assert_rolled_back(record, log) == ["a"]


def test_start_to_close_interrupts_a_sleeping_step_which_retries_then_rolls_back(worker):
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), bounded.s(label="slow", log=log, sleep=20), s("after")))
    assert record.status == "compensated", record.error
    assert record.error["type"] == "DeadlineExceeded"
    assert record.error["message"].startswith("start_to_close:")
    assert journaled_reason(record.id)["type"] == "DeadlineExceeded"
    assert effects(log).count("try:slow") == 2  # interrupted, retried once, interrupted again
    assert "do:slow" not in effects(log)
    assert record.step("1.bounded").attempts == 2
    assert assert_rolled_back(record, log) == ["a"]


def test_start_to_close_given_on_the_canvas(worker):
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), act.s(label="slow", log=log, sleep=20).set(start_to_close=1)))
    assert record.status == "compensated", record.error
    assert record.error["type"] == "DeadlineExceeded"
    assert assert_rolled_back(record, log) == ["a"]


def test_run_timeout_fails_the_run_and_compensates_what_completed(worker):
    log = new_log()
    s = step_of(log)
    started = time.monotonic()
    record = run(lambda: chain(s("a"), s("b", sleep=3), s("c")), timeout=1.5)
    assert record.status == "compensated", record.error
    assert record.error["type"] == "DeadlineExceeded"
    assert record.error["message"].startswith("timeout:")
    assert journaled_reason(record.id)["message"].startswith("timeout:")
    # b was running when the run timed out (inflight="wait"): it finished, then was undone
    assert assert_rolled_back(record, log) == ["b", "a"]
    assert "do:c" not in effects(log) and record.step("2.act").status == "skipped"
    assert time.monotonic() - started < 30


def test_a_run_finishing_in_time_is_untouched_by_its_deadlines(worker):
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a").set(schedule_to_start=5, start_to_close=5), s("b")), timeout=5)
    assert record.status == "succeeded"
    time.sleep(5.5)  # the deadline messages fire and change nothing
    assert get_run(record.id).status == "succeeded"
    assert effects(log) == ["do:a", "do:b"]


def test_bad_deadlines_are_refused_before_anything_runs():
    with pytest.raises(DefinitionError, match="timeout must be a positive number"):
        Workflow(f"t.deadline.{uuid.uuid4().hex[:8]}", "1", build=lambda: None, timeout=0)
