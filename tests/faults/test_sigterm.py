"""Warm shutdown: SIGTERM to a worker's main process (what Kubernetes sends to a pod being
removed) lets the running step finish and journal; the rest of the run goes on elsewhere."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from typing import Any

import pytest
from celery import chain

from canvasflow.config.celery_app import current_app
from canvasflow.config.settings import get_settings
from canvasflow.workers.capabilities import registry
from canvasflow.workers.deploy.plan import plan_fleets
from canvasflow.workers.deploy.render import deployed_capabilities, step_limits
from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.test_killed_workers import QUEUES, running_step, wait_for
from tests.integration.saga import effects
from tests.integration.sagacheck import new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults, pytest.mark.usefixtures("broker")]

STEP_SECONDS = 4.0
EAGER_SWEEP = {"CANVASFLOW_SWEEP_INTERVAL": "0.5", "CANVASFLOW_HEARTBEAT_INTERVAL": "0.5"}


def _exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker still running {timeout:g}s after SIGTERM") from None


def _step_events(run_id: str, step_id: str) -> list[dict[str, Any]]:
    return [e for e in runtime().store.events(run_id) if e.get("step_id") == step_id]


def _rendered_grace(capability: str) -> int:
    """The terminationGracePeriodSeconds `canvasflow deploy render` gives the capability's fleet."""
    s = get_settings()
    limits = step_limits(current_app(), deployed_capabilities(registry.capabilities()))
    fleets = plan_fleets(
        limits, [], default_seconds=s.deploy_step_seconds, margin=s.deploy_grace_margin, concurrency=1
    )
    return next(f.grace for f in fleets if f.capability == capability)


def test_sigterm_during_a_step_lets_it_finish_and_the_run_completes_elsewhere(celery_worker_factory):
    leaving = celery_worker_factory(queues=QUEUES, concurrency=1)
    log = new_log()
    s = step_of(log)
    wf = Workflow(
        f"t.sigterm.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: chain(s("a"), s("slow", sleep=STEP_SECONDS), s("c"), s("d")),
    )
    run = start(wf.name)
    wait_for(lambda: running_step(run.id, "1.act"), timeout=60)
    leaving.kill(signal.SIGTERM)  # the main process only, as the kubelet does to PID 1
    termed = time.monotonic()
    # the replacement pod is already up while the old one drains (maxUnavailable: 0), and its
    # recovery sweep runs every half second: it must leave the draining worker's step alone
    arriving = celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=EAGER_SWEEP)

    code = _exit_code(leaving.process, timeout=60)
    stopped_after = time.monotonic() - termed
    record = run.wait(90)

    assert code == 0, leaving.log_tail()  # a warm shutdown, not a crash
    assert record.status == "succeeded", record.error
    assert effects(log) == ["do:a", "do:slow", "do:c", "do:d"]  # each body ran once, in order
    slow = record.step("1.act")
    assert slow.attempts == 1 and slow.result == "slow"
    assert slow.worker == leaving.hostname  # finished where it started
    assert {record.step("2.act").worker, record.step("3.act").worker} == {arriving.hostname}
    # the worker waited for its step rather than leaving it to the visibility timeout
    assert stopped_after < 30, f"warm shutdown took {stopped_after:.1f}s"
    assert [e["event"] for e in _step_events(run.id, "1.act")].count("step.succeeded") == 1
    assert "Warm shutdown" in leaving.read_log()
    # the pod would have been given long enough: Kubernetes would not have SIGKILLed it mid-step
    assert _rendered_grace("demo") > stopped_after
