"""A step left ``queued`` with no message anywhere (a worker SIGKILLed right after its BRPOP:
kombu records a message as unacked only after reading the reply) is dispatched again; a step
whose message merely waits in a long queue is not."""

from __future__ import annotations

import time
import uuid

import pytest
from celery import chain

from canvasflow.config.celery_app import app
from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.runtime.wire import task_id_for
from tests.faults.outage import MODULES
from tests.faults.steps import counts, tick
from tests.faults.test_killed_workers import QUEUES, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

FAST = {
    "CANVASFLOW_HEARTBEAT_INTERVAL": "0.5",
    "CANVASFLOW_HEARTBEAT_TTL": "3",
    "CANVASFLOW_SWEEP_INTERVAL": "0.5",
    "CANVASFLOW_QUEUED_GRACE": "3",
    "CANVASFLOW_VISIBILITY_TIMEOUT": "3600",
    "CANVASFLOW_WORKFLOW_MODULES": MODULES,
}


def messages(queue: str, task_id: str) -> list[bytes]:
    with app.connection_for_read() as conn:
        return [m for m in conn.default_channel.client.lrange(queue, 0, -1) if task_id.encode() in m]


def lose(queue: str, task_id: str) -> None:
    """Take the message off the list, as a worker killed just after BRPOP leaves it: nowhere."""
    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        for raw in messages(queue, task_id):
            client.lrem(queue, 0, raw)


def test_a_queued_step_whose_message_was_lost_is_dispatched_again(redis_url, celery_worker_factory):
    counter = f"counter:{uuid.uuid4().hex}"
    steps = [tick.s(label=x, counter=counter, counter_url=redis_url) for x in ("a", "b")]
    name = Workflow(f"t.lost.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(*steps)).name
    run = start(name)  # no worker consumes yet: the first step's message waits in cap.demo
    first = task_id_for(run.id, "0.tick", 1)
    assert len(messages("cap.demo", first)) == 1
    lose("cap.demo", first)
    assert messages("cap.demo", first) == []

    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=FAST)
    record = run.wait(45)
    assert record.status == "succeeded", record.error
    assert counts(redis_url, counter) == {"a": 1, "b": 1}


def test_a_step_waiting_in_a_queue_nobody_consumes_is_not_published_again(redis_url, celery_worker_factory):
    counter = f"counter:{uuid.uuid4().hex}"
    backlog = f"t.backlog.{uuid.uuid4().hex[:6]}"
    step = tick.s(label="a", counter=counter, counter_url=redis_url).set(queue=backlog)
    run = start(Workflow(f"t.backlog.{uuid.uuid4().hex[:8]}", "1", build=lambda: step).name)
    celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=FAST)
    tid = task_id_for(run.id, "tick", 1)
    rt = runtime()
    # the sweep suspects the step, waits its grace, then finds the message in the queue
    wait_for(lambda: rt.redis.hget(rt.state.key(run.id, "suspect"), "tick"), timeout=20)
    time.sleep(3 * 3 + 2)  # three grace periods
    assert len(messages(backlog, tid)) == 1  # still the one message: not published again
    assert rt.state.status(run.id) == "running"
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(backlog)
