"""1,000 runs asleep on one worker with two pool processes: none holds a slot while it sleeps
(another run's steps go through meanwhile), and every one wakes within 1 s of its due time."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import chain
from sqlalchemy import select

from canvasflow import Workflow, sleep, start
from canvasflow.workers.demo import add
from canvasflow.workflows.runtime import timers
from canvasflow.workflows.runtime.context import runtime
from tests.faults.test_killed_workers import wait_for
from tests.harness.workers import DEFAULT_QUEUES
from tests.integration.sagacheck import finished

pytestmark = [pytest.mark.redis, pytest.mark.worker]

RUNS = 1_000
SLEEP = 5.0
PROBE_WHEN = 200  # runs asleep when the probe run starts


def sleep_rows(run_ids: list[str], step: str = "1.sleep") -> dict[str, dict]:
    """Each run's sleep step as journaled: status, started_at, wakes_at, finished_at (epoch s)."""
    store = runtime().store
    steps = store.t.steps
    out: dict[str, dict] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(run_ids), 500):
            rows = conn.execute(
                select(
                    steps.c.run_id, steps.c.status, steps.c.started_at, steps.c.wakes_at, steps.c.finished_at
                ).where(steps.c.step_id == step, steps.c.run_id.in_(run_ids[i : i + 500]))
            ).mappings()
            for r in rows:
                out[r["run_id"]] = {
                    k: (r[k].replace(tzinfo=None).timestamp() - time.timezone if r[k] else None)
                    for k in ("started_at", "wakes_at", "finished_at")
                } | {"status": r["status"]}
    return out


def test_a_thousand_runs_asleep_hold_no_slot_and_wake_within_a_second(celery_worker_factory):
    celery_worker_factory(queues=DEFAULT_QUEUES, concurrency=2)
    sleeper = Workflow(
        f"t.sleepers.{uuid.uuid4().hex[:8]}", "1", build=lambda n: chain(add.s(n, 0), sleep(SLEEP), add.s(1))
    )
    probe = Workflow(
        f"t.probe.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: chain(add.s(0, 1), *(add.s(1) for _ in range(4))),
    )
    began = time.monotonic()
    with ThreadPoolExecutor(1) as starter:
        starting = starter.submit(lambda: [start(sleeper.name, {"n": i}).id for i in range(RUNS)])
        # while runs fall asleep, another run's five steps go through the same two pool processes
        wait_for(lambda: timers.asleep(runtime()) >= PROBE_WHEN, timeout=60)
        probed = finished(start(probe.name).id, timeout=30)
        runs = starting.result()
    started_in = time.monotonic() - began
    assert probed.status == "succeeded" and probed.result == 5
    probe_done = probed.finished_at.timestamp()

    records = {r: finished(r, timeout=120) for r in runs}
    assert all(rec.status == "succeeded" for rec in records.values())
    assert sorted(rec.result for rec in records.values()) == list(range(1, RUNS + 1))
    rows = sleep_rows(runs)
    assert len(rows) == RUNS and all(r["status"] == "succeeded" for r in rows.values())
    late = sorted(r["finished_at"] - r["wakes_at"] for r in rows.values())
    slept = sorted(r["wakes_at"] - r["started_at"] for r in rows.values())
    asleep_at_probe = sum(r["started_at"] <= probe_done < r["finished_at"] for r in rows.values())
    most_asleep = max(
        sum(r["started_at"] <= t < r["finished_at"] for r in rows.values())
        for t in (r["started_at"] for r in rows.values())
    )
    print(
        f"\n{RUNS} runs started in {started_in:.1f}s; at most {most_asleep} asleep at once on 2 pool "
        f"processes; the probe run's 5 steps finished with {asleep_at_probe} asleep; woken after due: "
        f"median {late[len(late) // 2] * 1000:.0f} ms, p99 {late[int(len(late) * 0.99)] * 1000:.0f} ms, "
        f"max {late[-1] * 1000:.0f} ms"
    )
    assert abs(slept[0] - SLEEP) < 0.01 and abs(slept[-1] - SLEEP) < 0.01  # each slept its 5 s
    assert late[0] >= 0, "a run woke before it was due"
    assert late[-1] < 1.0, f"a run woke {late[-1]:.3f}s after it was due"
    assert asleep_at_probe >= PROBE_WHEN // 2, asleep_at_probe  # far more than the 2 slots
