"""Limits across a fleet: two real workers (prefork, 2 processes each) share one rate and one
set of concurrency slots; a limited step waits without a worker process and is no attempt."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import datetime

import pytest
from celery import group

from canvasflow.workers.limits import LimitStore, limit_base
from canvasflow.workflows import Workflow, get_run, start
from canvasflow.workflows.runtime.context import runtime
from tests.integration.limit_steps import (
    CAPABILITY,
    by_customer,
    call,
    charge,
    flaky,
    max_overlap,
    probe_events,
    spans,
)

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("broker")]

QUEUES = [f"cap.{CAPABILITY}", "canvasflow", "canvasflow.control"]
MODULES = {
    "CANVASFLOW_WORKFLOW_MODULES": json.dumps(["tests.integration.flows", "tests.integration.limit_steps"])
}


def two_workers(celery_worker_factory) -> list[str]:
    return [celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=MODULES).hostname for _ in range(2)]


def test_a_rate_holds_across_two_workers(celery_worker_factory):
    hosts = two_workers(celery_worker_factory)
    wf = Workflow(
        f"t.limits.rate.{uuid.uuid4().hex[:6]}", "1", build=lambda: group(charge.s(i) for i in range(60))
    )
    run = start(wf.name)
    time.sleep(3)  # a few seconds in: most steps wait for their turn, the run is running
    during = get_run(run.id)
    waiting = [s for s in during.steps if s.status == "limited"]
    assert during.status == "running" and len(waiting) >= 20
    assert all(s.attempts == 0 for s in waiting)  # not claimed: no attempt used
    record = run.wait(120)
    assert record.status == "succeeded", record.error
    assert record.result == list(range(60))

    starts = sorted(s.started_at for s in record.steps)
    assert all(isinstance(t, datetime) for t in starts)
    seconds = [(t - starts[0]).total_seconds() for t in starts]
    rate = (len(seconds) - 1) / seconds[-1]
    half = len(seconds) // 2
    second_half = (len(seconds) - 1 - half) / (seconds[-1] - seconds[half])
    # (turns are booked exactly 0.2 s apart; a start is late by the worker's own delay, so a few
    # late ones may bunch after a stall: the busiest 1 s window is reported, not asserted)
    busiest = max(sum(1 for t in seconds if s <= t < s + 1.0) for s in seconds)
    print(
        f"\nobserved {rate:.3f} starts/s over {seconds[-1]:.2f} s (second half {second_half:.3f}/s), "
        f"busiest 1 s window {busiest}"
    )
    assert 4.5 <= rate <= 5.5
    assert 4.5 <= second_half <= 5.5
    assert {s.worker for s in record.steps} == set(hosts)  # both workers ran steps
    assert all(s.attempts == 1 for s in record.steps)  # waiting for the limit is no attempt
    events = [e["event"] for e in runtime().store.events(record.id)]
    assert "step.limited" in events and "step.failed" not in events


def test_concurrency_per_key_holds_across_two_workers(celery_worker_factory):
    two_workers(celery_worker_factory)
    probe = f"limits-probe:{uuid.uuid4().hex}"
    customers = ["ann", "bob"]
    wf = Workflow(
        f"t.limits.conc.{uuid.uuid4().hex[:6]}",
        "1",
        build=lambda: group(call.s(c, probe=probe, sleep=0.4) for c in customers * 6),
    )
    record = start(wf.name).wait(120)
    assert record.status == "succeeded", record.error
    ran = spans(probe)
    assert all(len(ran[c]) == 6 for c in customers)
    per_customer = {c: max_overlap(ran[c]) for c in customers}
    overall = max_overlap(ran["ann"] + ran["bob"])
    print(f"\nmost at once: {per_customer} per customer, {overall} overall")
    assert all(n <= 2 for n in per_customer.values())
    assert overall > 2  # the limit is per customer: both customers' calls ran side by side
    assert all(s.attempts == 1 and s.status == "succeeded" for s in record.steps)
    slots = f"{runtime().settings.key_prefix}:limit:{{limits.call|*}}:slots"
    deadline = time.monotonic() + 10  # the last delivery gives its slot back just after the run ends
    while runtime().redis.keys(slots):
        assert time.monotonic() < deadline, "a slot was not given back"
        time.sleep(0.05)


def test_a_retry_is_an_attempt_and_asks_the_limit_again(celery_worker_factory):
    """Celery's retries of a limited step each wait for a turn of the rate (1/s here), even when the
    first delivery had booked its turn while waiting: a booked turn is spent once."""
    two_workers(celery_worker_factory)
    rt = runtime()
    LimitStore(rt.redis).acquire(limit_base(rt.settings.key_prefix, "tests.flaky"), per_second=1.0)
    probe = f"limits-probe:{uuid.uuid4().hex}"
    wf = Workflow(f"t.limits.retry.{uuid.uuid4().hex[:6]}", "1", build=lambda: flaky.s(probe=probe))
    record = start(wf.name).wait(60)
    assert record.status == "succeeded", record.error
    (only,) = record.steps
    assert only.attempts == 3 and record.result == 3
    starts = [at for _, _, at in probe_events(probe)]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(starts)]
    print(f"\nattempts started {gaps} s apart (rate 1/s, retries without delay)")
    assert all(g >= 0.8 for g in gaps)


def test_a_key_function_that_fails_fails_the_step_saying_so(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=MODULES)
    wf = Workflow(f"t.limits.badkey.{uuid.uuid4().hex[:6]}", "1", build=lambda: by_customer.s({"id": 7}))
    record = start(wf.name).wait(60)
    assert record.status == "failed"
    error = record.steps[0].error
    assert error["type"] == "DefinitionError"
    assert "limit 'limits.by_customer': its key function failed" in error["message"]
    assert "KeyError" in error["message"]
