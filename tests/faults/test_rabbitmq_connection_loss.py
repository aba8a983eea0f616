"""RabbitMQ drops a worker's connection mid-step (a broker restart or a network cut, as the
worker sees it): the worker reconnects, the step's message comes back, the run ends."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from celery import chain

from canvasflow.workflows import Workflow, start
from tests.faults.test_killed_workers import QUEUES, running_step, wait_for
from tests.integration.saga import effects
from tests.integration.sagacheck import new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults, pytest.mark.brokers("amqp")]


def close_connections(vhost: str) -> None:
    """Every connection to ``vhost`` closed by the broker (only this session's vhost)."""
    done = subprocess.run(
        ["rabbitmqctl", "-q", "close_all_connections", "--vhost", vhost, "canvasflow test: connection lost"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_worker_connection_closed_mid_step_the_run_still_succeeds(
    broker, canvasflow_session, celery_worker_factory
):
    worker = celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    name = Workflow(
        f"t.connloss.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(s("a"), s("slow", sleep=3.0), s("c"))
    ).name
    run = start(name)
    wait_for(lambda: running_step(run.id, "1.act"))
    close_connections(canvasflow_session.rabbit.vhost)

    record = run.wait(90)
    assert record.status == "succeeded", (record.status, record.error, worker.log_tail(40))
    # the cut step was cancelled (worker_cancel_long_running_tasks_on_connection_loss) before
    # its effect, and its requeued message ran it once more
    assert effects(log) == ["do:a", "do:slow", "do:c"]
    assert record.step("1.act").attempts == 2
    assert worker.alive  # reconnected, not crashed
