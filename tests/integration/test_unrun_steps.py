"""A step no worker will run ends its run, on Redis and on RabbitMQ: one whose message expired
(Celery's ``expires``) before a worker took it, one revoked from outside canvasflow while its
run runs. Each fails
with StepRevoked saying why and what to do, and the saga rolls back the steps that completed.
(Before, the step was marked revoked and its run stayed ``running`` for good.) A step whose body
raises Celery's Ignore or Reject (no requeue) fails with StepDeclined. A step whose task the
worker does not have: tests/integration/test_bad_input_wire.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import chain, group

from canvasflow.config.celery_app import app
from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.runtime.wire import task_id_for
from tests.faults.outage import own_runs, settings_env
from tests.integration.saga import declines, effects, started_key
from tests.integration.sagacheck import new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("broker")]  # Redis and RabbitMQ
QUEUES = ["cap.demo", "canvasflow", "canvasflow.control"]


def _workflow(build: Callable[[], Any]) -> str:
    return Workflow(f"t.unrun.{uuid.uuid4().hex[:8]}", "1", build=build).name


@pytest.fixture
def own_sweep() -> Iterator[dict[str, str]]:
    """Fast sweep settings, and runs of this test's own (:func:`own_runs`)."""
    fast = {"heartbeat_interval": "1", "heartbeat_ttl": "4", "sweep_interval": "1", "queued_grace": "3"}
    with settings_env(**own_runs(), **fast) as env:
        yield env


def test_a_step_whose_message_expired_fails_the_run_and_the_saga_rolls_back(celery_worker_factory, own_sweep):
    """On Redis the worker finds the message expired when it takes it; RabbitMQ drops it from the
    queue itself, and the sweep (fast here) fails the step it finds gone past its expiry."""
    # "b" waits behind "slow", past its expiry
    celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=own_sweep)
    log = new_log()
    s = step_of(log)
    run = start(_workflow(lambda: chain(s("first"), group(s("slow", sleep=3), s("b").set(expires=1)))))
    record = run.wait(40)

    assert record.status == "compensated", (record.status, record.error)
    assert record.error["type"] == "StepRevoked"
    assert "expired" in record.error["message"] and f"canvasflow resume {run.id}" in record.error["message"]
    assert sorted(effects(log)) == sorted(["do:first", "do:slow", "undo:slow", "undo:first"])
    assert {st.step_id: st.status for st in record.steps}["1.1.act"] == "failed"


def test_a_step_revoked_from_outside_fails_the_run_and_the_saga_rolls_back(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=1)
    log = new_log()
    s = step_of(log)
    run = start(_workflow(lambda: chain(s("first"), group(s("slow", sleep=3), s("b")))))
    deadline = time.monotonic() + 20
    # once "slow" runs, "b" waits in the worker (its one process is busy)
    while not runtime().redis.exists(started_key(log, "slow")) and time.monotonic() < deadline:
        time.sleep(0.05)
    app.control.revoke(task_id_for(run.id, "1.1.act", 1))
    record = run.wait(40)

    assert record.status == "compensated", (record.status, record.error)
    assert record.error["type"] == "StepRevoked" and "revoked" in record.error["message"]
    assert sorted(effects(log)) == sorted(["do:first", "do:slow", "undo:slow", "undo:first"])


@pytest.mark.parametrize("how", ["ignore", "reject"])
def test_a_step_that_neither_returns_nor_fails_fails_the_run_and_the_saga_rolls_back(
    celery_worker_factory, how
):
    """A body raising Celery's Ignore (``self.replace`` does) or Reject without requeue leaves no
    message of its step: the step fails with StepDeclined instead of being sent again for ever."""
    celery_worker_factory(queues=QUEUES, concurrency=1)
    log = new_log()
    s = step_of(log)
    run = start(_workflow(lambda: chain(s("first"), declines.s(how=how), s("never"))))
    record = run.wait(30)

    assert record.status == "compensated", (record.status, record.error)
    assert record.error["type"] == "StepDeclined"
    assert ("Ignore" if how == "ignore" else "Reject") in record.error["message"]
    assert f"canvasflow resume {run.id}" in record.error["message"]
    assert effects(log) == ["do:first", "undo:first"]
    assert {st.step_id: st.status for st in record.steps}["1.declines"] == "failed"


def test_a_step_past_its_hard_time_limit_fails_the_run_and_the_saga_rolls_back(celery_worker_factory):
    """Celery kills the process running a step past its ``time_limit`` and fails the task: the
    step fails (a start_to_close deadline, DeadlineExceeded), is not sent again, and the saga
    rolls back."""
    celery_worker_factory(queues=QUEUES, concurrency=1)
    log = new_log()
    s = step_of(log)
    run = start(_workflow(lambda: chain(s("first"), s("slow", sleep=30).set(time_limit=2), s("never"))))
    record = run.wait(45)

    assert record.status == "compensated", (record.status, record.error)
    assert record.error["type"] == "DeadlineExceeded", record.error
    assert "TimeLimitExceeded" in record.error["message"]
    assert effects(log) == ["do:first", "undo:first"]
    assert {st.step_id: st.status for st in record.steps}["1.act"] == "failed"
    assert runtime().redis.exists(started_key(log, "slow")) == 1  # it did start
    assert record.step("1.act").attempts == 1  # and was not sent again
