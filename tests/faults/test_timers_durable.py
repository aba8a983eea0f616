"""A long sleep outlives its control worker and its Redis: the worker holding the run is
SIGKILLed, Redis restarts without persistence (the run's state and the timer index are gone),
and a new control worker, its clock moved forward with ``CANVASFLOW_CLOCK_OFFSET`` (the fake
clock), rebuilds the run from the journal, re-arms the timer with the journaled due time (not
a fresh hour) and wakes it within a second of due; the step before the sleep does not run
again."""

from __future__ import annotations

import time
import uuid

import pytest
from celery import chain

from canvasflow import Workflow, sleep, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.outage import PrivateRedis, redis_env, settings_env, wait_all_terminal
from tests.faults.steps import counts, tick
from tests.faults.test_killed_workers import QUEUES, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

HOUR = 3600.0
LEAD = 20.0  # seconds from the new worker's start until the sleep is due on its (fake) clock


def journal(run_id: str):
    """The run as the journal has it (``get_run`` fills in from Redis what it lacks)."""
    return runtime().store.get_run(run_id)


def test_a_long_sleep_survives_a_killed_worker_and_a_redis_restart(
    tmp_path, redis_url, celery_worker_factory
):
    server = PrivateRedis(tmp_path / "redis", "none").start()
    fast = {"heartbeat_interval": "1", "heartbeat_ttl": "4", "sweep_interval": "1", "queued_grace": "4"}
    counter = f"n:{uuid.uuid4().hex}"
    try:
        with settings_env(**redis_env(server.url()), **fast) as env:
            first = celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)

            def build() -> object:
                return chain(
                    tick.s(label="before", counter=counter, counter_url=redis_url),
                    sleep(HOUR),
                    tick.s(label="after", counter=counter, counter_url=redis_url),
                )

            wf = Workflow(f"t.longsleep.{uuid.uuid4().hex[:8]}", "1", build=build)
            run_id = start(wf.name).id
            # asleep, and the step before journaled (its record is batched: a kill within the
            # batch's 50 ms would lose it, and it would run again, at least once as documented)
            asleep = wait_for(
                lambda: (
                    (r := journal(run_id)).status == "waiting"
                    and r.step("0.tick").status == "succeeded"
                    and r
                ),
                timeout=30,
            )
            due = asleep.step("1.sleep").wakes_at
            assert due is not None and HOUR - 30 < due.timestamp() - time.time() <= HOUR

            first.kill_group()  # the control worker and its pool, SIGKILLed
            server.stop()  # SHUTDOWN NOSAVE: the run's state and the timer index are gone
            server.start()
            assert runtime().state.status(run_id) is None

            offset = due.timestamp() - (time.time() + LEAD)  # the sleep falls due LEAD s from now
            fresh = time.time()
            celery_worker_factory(  # not pinged: this process's broker connections died with Redis
                queues=QUEUES,
                concurrency=2,
                extra_env={**env, "CANVASFLOW_CLOCK_OFFSET": repr(offset)},
                ready_timeout=None,
            )
            record = wait_all_terminal(journal, [run_id], timeout=90)[run_id]
            assert record.status == "succeeded", (record.status, record.error)
            assert record.generation == 2  # rebuilt from the journal
            assert record.result == "after"
            slept = record.step("1.sleep")
            assert slept.wakes_at == due  # the journaled due time, not a fresh hour
            due_on_wall = due.timestamp() - offset  # the moment the fake clock reached it
            woke = slept.finished_at.timestamp()
            print(
                f"\nrebuilt; woken {woke - due_on_wall:.3f}s after due, {woke - fresh:.1f}s after the restart"
            )
            assert 0 <= woke - due_on_wall < 1.0
            assert counts(redis_url, counter) == {"before": 1, "after": 1}
    finally:
        server.stop()
