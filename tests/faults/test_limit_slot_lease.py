"""A worker killed while its step holds a concurrency slot: the slot frees when its lease runs out
(not when the message comes back after the visibility timeout), the waiting steps go on, and
the run finishes with the killed step run again."""

from __future__ import annotations

import json
import signal
import time
import uuid

import pytest
from celery import group

from canvasflow.workflows import Workflow, start
from tests.faults.test_killed_workers import wait_for
from tests.integration.limit_steps import CAPABILITY, exclusive, max_overlap, probe_events, spans

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

QUEUES = [f"cap.{CAPABILITY}", "canvasflow", "canvasflow.control"]
LEASE = 3.0
ENV = {
    "CANVASFLOW_WORKFLOW_MODULES": json.dumps(["tests.integration.flows", "tests.integration.limit_steps"]),
    "CANVASFLOW_LIMIT_LEASE_TTL": str(LEASE),
    "CANVASFLOW_LIMIT_MAX_WAIT": "1",
}


def test_a_killed_holder_frees_its_slot_after_the_lease(celery_worker_factory):
    workers = {
        w.hostname: w
        for w in (celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=ENV) for _ in range(2))
    }
    probe, account = f"limits-probe:{uuid.uuid4().hex}", f"acct-{uuid.uuid4().hex[:6]}"
    wf = Workflow(
        f"t.limits.lease.{uuid.uuid4().hex[:6]}",
        "1",
        build=lambda: group(exclusive.s(account, probe=probe, label=x, sleep=4.0) for x in "abc"),
    )
    run = start(wf.name)
    first = wait_for(lambda: probe_events(probe), timeout=60)[0][1]
    holder = next(
        s for s in run.record.steps if s.status != "succeeded" and _label(run.id, s.step_id) == first
    )
    info = wait_for(lambda: _info(run.id, holder.step_id))
    workers[info["worker"]].kill_group(signal.SIGKILL)  # the host is gone, slot and all
    killed_at = time.time()

    record = run.wait(120)
    assert record.status == "succeeded", record.error
    later = [at for kind, _, at in probe_events(probe) if kind == "start" and at > killed_at]
    freed_after = later[0] - killed_at
    print(f"\nnext start {freed_after:.2f} s after the kill (lease {LEASE:g} s, visibility timeout 10 s)")
    assert LEASE - 1.5 <= freed_after < 9.0  # by the lease (renewed every second), not by redelivery
    done = [span for spans_of in spans(probe).values() for span in spans_of]
    assert len(done) == 3 and max_overlap(done) == 1  # one at a time throughout
    assert record.step(holder.step_id).attempts == 2  # the killed delivery ran again
    assert sorted(s.attempts for s in record.steps) == [1, 1, 2]


def _label(run_id: str, step_id: str) -> str:
    from canvasflow.workflows.runtime.context import runtime

    return runtime().graph(run_id, 1).steps[step_id].kwargs["label"]["v"]


def _info(run_id: str, step_id: str) -> dict | None:
    from canvasflow.workflows.runtime.context import runtime

    return runtime().state.step_info(run_id).get(step_id)
