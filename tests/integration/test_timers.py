"""Durable timers (``canvasflow.sleep``, ``sleep_until``) with a real worker, Redis and journal:
a sleep hands on its input unchanged in a chain, a group, a chord and the DAG form; the run
is ``waiting`` with its wake-up time journaled while it sleeps; the timer service wakes it."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery import chain, chord

from canvasflow import Workflow, cancel, get_run, history, result, resume, sleep, sleep_until, start
from canvasflow.workers.demo import add, echo
from canvasflow.workflows.cli.history import history_text
from canvasflow.workflows.runtime import timers
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.views.reports import run_json, run_text
from tests.integration.saga import effects
from tests.integration.sagacheck import assert_rolled_back, finished, new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def name() -> str:
    return f"t.sleep.{uuid.uuid4().hex[:8]}"


def wait_status(run_id: str, status: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while (record := get_run(run_id)).status != status:
        assert time.monotonic() < deadline, f"run {run_id} still {record.status}, not {status}"
        time.sleep(0.05)
    return record


def test_a_chained_sleep_waits_journals_its_wake_up_and_hands_on_its_input(worker):
    wf = Workflow(name(), "1", build=lambda: chain(add.s(1, 2), sleep(2), add.s(10)))
    begun = time.time()
    run = start(wf.name)
    asleep = wait_status(run.id, "waiting")
    step = asleep.step("1.sleep")
    assert step.status == "waiting" and step.wakes_at is not None
    assert begun + 2 <= step.wakes_at.timestamp() <= time.time() + 2
    assert runtime().store.wakes_at(run.id, "1.sleep") == step.wakes_at  # journaled, not just in Redis
    # status and history say when it wakes
    shown = run_text(run_json(asleep), asleep.graph)
    assert f"asleep until {step.wakes_at.isoformat()}" in shown
    assert f"wakes {step.wakes_at.isoformat()}" in shown
    told = history_text([e.to_json() for e in history(run.id)])
    assert "step.sleeping  1.sleep" in told and f"wakes_at={step.wakes_at.isoformat()}" in told
    record = finished(run.id, timeout=30)
    assert record.status == "succeeded" and record.result == 13
    woke = record.step("1.sleep")
    assert woke.status == "succeeded" and woke.result == 3
    late = woke.finished_at.timestamp() - woke.wakes_at.timestamp()
    assert 0 <= late < 1.0, f"woke {late:.3f}s after it was due"


def test_sleeps_in_a_group_and_a_chord_body_hand_on_their_inputs(worker):
    wf = Workflow(
        name(),
        "1",
        build=lambda: chord(
            [chain(add.s(1, 1), sleep(1)), chain(add.s(2, 2), sleep(timedelta(seconds=1.5))), add.s(3, 3)],
            chain(sleep(0.5), echo.s()),
        ),
    )
    record = finished(start(wf.name).id, timeout=30)
    assert record.status == "succeeded", record.error
    assert record.result == [[2, 4, 6]]  # echo returns its arguments: the header's list, unchanged


def test_sleep_in_the_dag_form_and_sleep_until_a_time_past_or_to_come(worker):
    soon = datetime.now(UTC) + timedelta(seconds=1)
    wf = Workflow(
        name(),
        "1",
        steps={
            "a": add.s(5, 5),
            "wait": sleep_until(soon, result("a")),
            "past": sleep_until(datetime(2000, 1, 1, tzinfo=UTC), result("a")),
            "b": add.s(result("wait"), result("past")),
        },
    )
    record = finished(start(wf.name).id, timeout=30)
    assert record.status == "succeeded", record.error
    assert record.result == 20
    wait = record.step("wait")
    assert wait.wakes_at is not None and abs(wait.wakes_at.timestamp() - soon.timestamp()) < 0.01
    assert record.step("past").wakes_at is None  # due already: completed at once, never asleep


def test_a_run_timeout_fails_a_sleeping_run_and_its_timer_then_changes_nothing(worker):
    wf = Workflow(name(), "1", build=lambda: chain(add.s(1, 1), sleep(3), add.s(1)), timeout=1)
    run = start(wf.name)
    record = finished(run.id, timeout=20)
    assert record.status == "failed" and record.error["type"] == "DeadlineExceeded"
    time.sleep(3.5)  # the timer comes due and fires: the run is not active, nothing moves
    again = get_run(run.id)
    assert again.status == "failed" and again.step("2.add").status in ("pending", "skipped")
    assert again.step("1.sleep").status == "waiting"
    due = timers.due(runtime(), 10_000)
    assert timers.member(run.id, "1.sleep", 1) not in due  # fired and removed from the index


def test_a_cancel_with_compensate_during_a_sleep_rolls_back_and_the_timer_then_changes_nothing(worker):
    log = new_log()
    s = step_of(log)
    wf = Workflow(name(), "1", build=lambda: chain(s("a"), s("b"), sleep(2), s("c")))
    run = start(wf.name)
    assert wait_status(run.id, "waiting").step("2.sleep").status == "waiting"
    cancel(run.id, compensate=True)
    record = finished(run.id, timeout=30)
    assert record.status == "compensated", record.error
    assert record.error["type"] == "Cancelled"
    assert assert_rolled_back(record, log) == ["b", "a"]  # newest first; the sleep has nothing to undo
    time.sleep(3)  # past its due time: the timer fires on a run that is no longer active
    assert "do:c" not in effects(log)
    after = get_run(run.id)
    assert after.status == "compensated" and after.step("3.act").status in ("pending", "skipped")
    assert timers.member(run.id, "2.sleep", 1) not in timers.due(runtime(), 10_000)


def test_a_run_cancelled_asleep_and_resumed_sleeps_until_the_journaled_due_time(worker):
    wf = Workflow(name(), "1", build=lambda: chain(add.s(1, 1), sleep(3), add.s(1)))
    run = start(wf.name)
    due = wait_status(run.id, "waiting").step("1.sleep").wakes_at
    cancel(run.id)
    assert finished(run.id).status == "cancelled"
    resume(run.id)
    assert runtime().store.get_run(run.id).status == "waiting"  # journaled asleep again, generation 2
    record = finished(run.id, timeout=30)
    assert record.status == "succeeded" and record.result == 3 and record.generation == 2
    woke = record.step("1.sleep")
    assert woke.wakes_at == due  # not a fresh 3 s from the resume
    assert 0 <= woke.finished_at.timestamp() - due.timestamp() < 1.0


def test_a_run_whose_last_step_is_a_sleep_succeeds_when_it_wakes(worker):
    wf = Workflow(name(), "1", build=lambda: chain(add.s(1, 1), sleep(1)))
    run = start(wf.name)
    record = finished(run.id, timeout=30)  # the timer service completes the last step: the run ends
    assert record.status == "succeeded" and record.result == 2, (record.status, record.error)
    woke = record.step("1.sleep").wakes_at
    assert record.finished_at is not None and woke is not None
    # ended by the timer service as it woke the step, not by the sweep seconds later
    assert 0 <= (record.finished_at - woke).total_seconds() < 3, (woke, record.finished_at)


def test_a_run_resumed_from_a_step_before_its_sleep_sleeps_again(worker):
    wf = Workflow(name(), "1", build=lambda: chain(add.s(1, 1), sleep(2), add.s(1)))
    run = start(wf.name)
    first = finished(run.id, timeout=30)
    assert first.status == "succeeded" and first.result == 3
    slept = first.step("1.sleep").wakes_at
    resumed_at = datetime.now(UTC)
    resume(run.id, from_step="0.add")  # the sleep is downstream: it runs again, so it sleeps again
    record = finished(run.id, timeout=30)
    again = record.step("1.sleep")
    seen = (record.status, record.result, record.generation, slept, resumed_at, again)
    assert record.status == "succeeded" and record.result == 3 and record.generation == 2, seen
    assert again.wakes_at > slept and (again.wakes_at - resumed_at).total_seconds() >= 1.9, seen
    assert again.finished_at >= again.wakes_at, seen  # it waited: not woken at once by the old due time


def test_a_timer_lost_from_the_index_is_put_back_by_the_sweep(celery_worker_factory):
    celery_worker_factory(extra_env={"CANVASFLOW_SWEEP_INTERVAL": "1"})
    wf = Workflow(name(), "1", build=lambda: chain(add.s(1, 1), sleep(2), add.s(1)))
    run = start(wf.name)
    wait_status(run.id, "waiting")
    rt = runtime()
    lost = timers.member(run.id, "1.sleep", 1)
    assert rt.redis.zrem(timers.index_key(rt.settings), lost) == 1  # as if the index lost it alone
    record = finished(run.id, timeout=30)  # without the sweep's rearm it would sleep for good
    assert record.status == "succeeded" and record.result == 3
