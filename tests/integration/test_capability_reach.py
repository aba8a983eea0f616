"""No message to a queue nobody serves: a run needing a capability that is not declared, has
no engine and no live worker consuming its queue is refused at start, with nothing journaled
or enqueued; the same for map steps and child workflows (docs/routing.md, "Refusals")."""

from __future__ import annotations

import json
import os

import pytest

from canvasflow import RoutingError, current_app, list_runs, start
from canvasflow.config.brokers import queue_stats
from canvasflow.config.errors import StartRefused
from tests.integration import reach_flows

pytestmark = [pytest.mark.redis, pytest.mark.worker]
LONELY_QUEUE = f"cap.{reach_flows.LONELY}"


def flows_env() -> dict[str, str]:
    modules = [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "tests.integration.reach_flows"]
    return {"CANVASFLOW_WORKFLOW_MODULES": json.dumps(modules)}


def depth(queue: str) -> int:
    return queue_stats(current_app(), [queue])[0].depth


@pytest.mark.parametrize(
    ("workflow", "steps"),
    [
        ("reach.direct", "step 1.lonely"),
        ("reach.mapped", "step 1.map"),  # the map step's mapper
        ("reach.parent", "step 1.subworkflow/lonely"),  # a step of the child run
    ],
)
def test_a_run_needing_an_unknown_capability_is_refused_with_nothing_created(workflow: str, steps: str):
    before = len(list_runs(limit=1000))
    with pytest.raises(RoutingError) as refused:
        start(workflow)
    message = str(refused.value)
    assert f"capability '{reach_flows.LONELY}' ({steps})" in message, message
    assert "CANVASFLOW_CAPABILITIES" in message and "CANVASFLOW_ENGINES" in message
    assert f"canvasflow worker --capability {reach_flows.LONELY}" in message
    assert len(list_runs(limit=1000)) == before  # nothing journaled
    assert depth(LONELY_QUEUE) == 0  # nothing enqueued


def test_a_plain_start_message_for_an_unknown_capability_is_refused_by_the_control_worker(
    celery_worker_factory,
):
    celery_worker_factory(extra_env=flows_env())  # a control worker that knows the workflows
    before = len(list_runs(limit=1000))
    sent = current_app().send_task("canvasflow.start", kwargs={"workflow": "reach.direct", "inputs": {}})
    with pytest.raises(StartRefused, match=f"RoutingError: .*capability .{reach_flows.LONELY}."):
        sent.get(timeout=30)
    assert len(list_runs(limit=1000)) == before and depth(LONELY_QUEUE) == 0


def test_a_live_worker_consuming_the_queue_makes_the_capability_known(celery_worker_factory):
    with pytest.raises(RoutingError, match=reach_flows.SERVED):
        start("reach.served")  # nobody consumes cap.reachlive yet
    consumer = celery_worker_factory(
        queues=[f"cap.{reach_flows.SERVED}", "cap.demo", "canvasflow", "canvasflow.control"],
        extra_env=flows_env(),
    )
    # started the moment it answers a ping: a node's first beat is written before its
    # consumer loop runs, so a worker that answers is already known to serve its queues
    record = start("reach.served").wait(60)
    assert record.status == "succeeded", record.error
    ran = record.step("1.where").result
    assert ran["x"] == 2 and ran["queue"] == f"cap.{reach_flows.SERVED}"
    assert ran["worker"] == consumer.hostname  # it really ran on the worker that consumes the queue
    consumer.stop()  # its heartbeat is cleared: the capability is unknown again
    with pytest.raises(RoutingError, match=reach_flows.SERVED):
        start("reach.served")
