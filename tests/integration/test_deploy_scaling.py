"""What the rendered ScaledObjects count is where the steps wait: KEDA's redis trigger reads
LLEN of its listName in its databaseIndex, and that is the backlog of the fleet's queue."""

from __future__ import annotations

import uuid

import pytest
import redis
from celery import group

from canvasflow.config.settings import get_settings
from canvasflow.workers.capabilities import registry
from canvasflow.workers.deploy.manifests import Target, scaled_object
from canvasflow.workers.deploy.plan import plan_fleets
from canvasflow.workers.deploy.render import broker_target, deployed_capabilities
from canvasflow.workflows import Workflow, start
from tests.integration.saga import act

pytestmark = [pytest.mark.redis]


def test_the_redis_trigger_counts_the_steps_waiting_for_the_fleet(celery_worker_factory):
    # celery_worker_factory stops the module's shared worker: nobody consumes cap.demo now
    s = get_settings()
    target = broker_target(s.broker_url, Target())
    fleets = plan_fleets(
        {cap: [None] for cap in deployed_capabilities(registry.capabilities())},
        [],
        default_seconds=60,
        margin=5,
        concurrency=2,
    )
    demo = next(f for f in fleets if f.capability == "demo")
    (trigger,) = scaled_object(demo, target)["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "redis" and meta["listName"] == "cap.demo"
    broker = redis.Redis.from_url(s.broker_url, db=int(meta["databaseIndex"]))
    before = broker.llen(meta["listName"])

    log = f"saga-log:{uuid.uuid4().hex}"
    wf = Workflow(
        f"t.keda.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: group(act.si(label=f"p{i}", log=log) for i in range(5)),
    )
    run = start(wf.name)

    assert broker.llen(meta["listName"]) - before == 5  # KEDA sees five waiting steps
    worker = celery_worker_factory(queues=["cap.demo", "canvasflow", "canvasflow.control"])
    record = run.wait(60)
    assert record.status == "succeeded", record.error
    assert broker.llen(meta["listName"]) <= before  # drained: KEDA may scale down
    assert worker.alive
