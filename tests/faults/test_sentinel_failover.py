"""Redis Sentinel: broker, results and run state behind a primary, a replica and three sentinels
(tests/harness/sentinel.py), failed over mid-run. Every run ends, no step is lost, and a run
whose writes the promoted replica never received is rebuilt from the journal.

The step bodies count their executions in the session's Redis, which no failover touches."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from canvasflow.workflows import get_run, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.outage import MODULES, settings_env, wait_all_terminal
from tests.faults.steps import counts
from tests.faults.test_killed_workers import QUEUES, wait_for
from tests.faults.test_redis_outage import FAST, any_step_running, chain_of_ticks
from tests.harness.sentinel import SentinelGroup

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

STEPS = 6


def _starts_during(wf: str, stop: threading.Event, started: list[str], refused: list[str]) -> None:
    """Start runs every 0.15 s until ``stop``, as a busy API server would through the failover."""
    while not stop.is_set():
        try:
            started.append(start(wf).id)
        except Exception as exc:  # a user sees this and retries; the test counts it
            refused.append(type(exc).__name__)
        time.sleep(0.15)


def _assert_every_run_succeeded(run_ids: list[str], counter: str, redis_url: str) -> None:
    records = wait_all_terminal(lambda r: runtime().store.get_run(r), run_ids, timeout=90)
    for record in records.values():
        assert record.status == "succeeded", (record.id, record.status, record.error)
        assert record.result == f"s{STEPS - 1}"
        assert all(s.status == "succeeded" for s in record.steps), record.steps
    for run_id in run_ids:  # the client reads through the sentinels too
        assert get_run(run_id).status == "succeeded"
    ran = counts(redis_url, counter)
    for i in range(STEPS):  # nothing lost: every step of every run ran (at least once)
        assert ran.get(f"s{i}", 0) >= len(run_ids), (i, ran)


@pytest.mark.parametrize("how", ["sentinel-failover", "primary-sigkilled"])
def test_failover_mid_run_every_run_ends_and_nothing_is_lost(tmp_path, redis_url, celery_worker_factory, how):
    with (
        SentinelGroup(tmp_path / "sentinel") as group,
        settings_env(**group.env(), workflow_modules=MODULES, **FAST) as env,
    ):
        worker = celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)
        counter = f"counter:{uuid.uuid4().hex}"
        wf = chain_of_ticks(STEPS, counter, redis_url, sleep=0.4)
        runs = [start(wf).id for _ in range(4)]
        wait_for(lambda: any_step_running(runs), timeout=20)

        stop, during, refused = threading.Event(), list[str](), list[str]()
        starter = threading.Thread(target=_starts_during, args=(wf, stop, during, refused))
        starter.start()
        time.sleep(0.3)
        began = time.monotonic()
        try:
            if how == "sentinel-failover":
                group.failover()
                lost = 0
            else:
                _, lost = group.kill_primary(lose_for=0.5)
        finally:
            time.sleep(0.3)
            stop.set()
            starter.join(10)
        promoted_after = time.monotonic() - began
        runs += during
        runs.append(start(wf).id)  # a start after the failover goes to the new primary

        _assert_every_run_succeeded(runs, counter, redis_url)
        ended_after = time.monotonic() - began
        assert worker.alive, worker.log_tail()
        log = worker.read_log()
        rebuilt = log.count("rebuilt a run's lost state") + log.count("rebuilt a run's stale state")
        print(  # the figures docs/reliability.md reports
            f"{how}: promoted in {promoted_after:.1f}s, every run ended {ended_after:.1f}s after the "
            f"failover began; {len(runs)} runs, {len(refused)} starts refused ({set(refused)}), "
            f"{lost} bytes of replication lost, {rebuilt} runs rebuilt from the journal"
        )
        if lost:  # writes the replica never received: the journal is what brought them back
            assert rebuilt >= 1, "writes were lost in the failover but no run was rebuilt from the journal"
