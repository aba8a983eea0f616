"""Timers fire within 1 s of due with 10,000 runs asleep: 10,000 runs sleep ten minutes while
200 more, sleeping 5 s, are woken by the timer service (one control worker, ``-c 2``; the
recovery sweep watches all of them meanwhile). Slow: 2-3.5 minutes here, most of it starting
the runs."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import chain

from canvasflow import Workflow, sleep, start
from canvasflow.workers.demo import add
from canvasflow.workflows.runtime import timers
from canvasflow.workflows.runtime.context import runtime
from tests.harness.workers import DEFAULT_QUEUES
from tests.integration.sagacheck import finished
from tests.integration.test_timers_load import sleep_rows

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.timeout(1500)]

ASLEEP = 10_000
PROBES = 200


def test_timers_fire_within_a_second_with_ten_thousand_runs_asleep(celery_worker_factory):
    celery_worker_factory(queues=DEFAULT_QUEUES, concurrency=2)
    long = Workflow(f"t.long.{uuid.uuid4().hex[:8]}", "1", build=lambda n: chain(sleep(600, n), add.s(1)))
    short = Workflow(f"t.short.{uuid.uuid4().hex[:8]}", "1", build=lambda n: chain(sleep(5, n), add.s(1)))
    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: start(long.name, {"n": i}), range(ASLEEP)))
    started_in = time.monotonic() - began
    in_index = timers.asleep(runtime())
    assert in_index >= ASLEEP

    probes = [start(short.name, {"n": i}).id for i in range(PROBES)]
    records = [finished(r, timeout=120) for r in probes]
    assert all(r.status == "succeeded" for r in records)
    assert sorted(r.result for r in records) == list(range(1, PROBES + 1))
    rows = sleep_rows(probes, "0.sleep")
    late = sorted(r["finished_at"] - r["wakes_at"] for r in rows.values())
    print(
        f"\n{ASLEEP} runs asleep (started in {started_in:.0f}s, {in_index} timers in the index); "
        f"{PROBES} runs sleeping 5 s woke after due: median {late[len(late) // 2] * 1000:.0f} ms, "
        f"p99 {late[int(len(late) * 0.99)] * 1000:.0f} ms, max {late[-1] * 1000:.0f} ms"
    )
    assert late[0] >= 0 and late[-1] < 1.0, late[-1]
    assert timers.asleep(runtime()) >= ASLEEP  # the long sleepers still asleep
