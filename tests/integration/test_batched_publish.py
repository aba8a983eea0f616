"""Many step messages at once go out in batches (workflows/runtime/publishing.py), on each broker.

A run whose first ready set is a 1,000-member group completes on a real worker with every
member's result in order; messages sent inside a batch reach the queue together when it
closes (Redis: one pipeline) and are all confirmed by then (RabbitMQ); what was sent before
an error inside a batch is still published.
"""

from __future__ import annotations

import time
import uuid

import pytest
from celery import group

from canvasflow.config.brokers import queue_stats
from canvasflow.config.celery_app import app
from canvasflow.workers.demo import add
from canvasflow.workflows import Workflow, get_run, start
from canvasflow.workflows.runtime import publishing
from tests.harness.plugin import Broker

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("broker")]

WIDE = Workflow("tests.wide_group", "1", build=lambda n: group(add.s(i, i) for i in range(n)))


def test_a_run_starting_with_a_group_of_1000_completes_with_every_result_in_order(broker: Broker, worker):
    run = start(WIDE.name, {"n": 1000})
    record = run.wait(240)
    assert record.status == "succeeded", record.error
    assert record.result == [2 * i for i in range(1000)]
    steps = get_run(run.id).steps
    assert len(steps) == 1000 and {s.status for s in steps} == {"succeeded"}
    assert sorted(s.result for s in steps) == [2 * i for i in range(1000)]


def depth(queue: str) -> int:
    (stats,) = queue_stats(app, [queue], timeout=0.2)
    return stats.depth


def wait_depth(queue: str, n: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    seen = depth(queue)
    while seen != n and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = depth(queue)
    return seen


def send(queue: str, i: int) -> None:
    app.send_task(
        add.name,
        args=[i, i],
        task_id=f"batch-{queue}-{i}",
        ignore_result=True,
        queue=queue,
        **publishing.send_options(add.name, queue),
    )


@pytest.fixture
def queue() -> object:
    name = f"cf.test.batch.{uuid.uuid4().hex[:8]}"  # no worker consumes it
    yield name
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(name)


def test_messages_sent_in_a_batch_are_on_the_broker_when_it_closes(broker: Broker, queue: str):
    with publishing.batch(app, size=500):
        for i in range(1200):  # more than one pipeline's worth
            send(queue, i)
        if broker.name == "redis":  # buffered: the last pipeline has not run yet
            assert depth(queue) < 1200
    assert wait_depth(queue, 1200) == 1200


def test_messages_sent_before_an_error_in_a_batch_are_still_published(broker: Broker, queue: str):
    with pytest.raises(RuntimeError, match="routing failed"), publishing.batch(app, size=500):
        for i in range(10):
            send(queue, i)
        raise RuntimeError("routing failed")
    assert wait_depth(queue, 10) == 10
