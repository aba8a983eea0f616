"""on_route: the router's decision for each routed step, with how long it took to decide."""

from __future__ import annotations

import json
import uuid

import pytest
from celery import group

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.telemetry.registry import add_middleware, remove_middleware
from tests.integration.routing_flows import lb
from tests.integration.telemetry_probe import Recorder, recorded
from tests.integration.test_routing import engine_env, queues, wait_live

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_each_routed_step_reports_its_route(celery_worker_factory):
    env = {
        **engine_env(),
        "CANVASFLOW_MIDDLEWARE": json.dumps(["tests.integration.telemetry_probe:Recorder"]),
    }
    celery_worker_factory(queues=queues("rlb", "a"), extra_env=env)
    wait_live({"rlb/a"})
    here = add_middleware(Recorder())  # the first steps are routed and dispatched here
    try:
        wf = Workflow(f"t.route.{uuid.uuid4().hex[:8]}", "1", build=lambda: group(lb.si(i) for i in range(4)))
        record = start(wf.name).wait(60)
    finally:
        remove_middleware(here)
    assert record.status == "succeeded", record.error
    seen = recorded(record.id)
    routes = {r["event"]["step_id"]: r["event"] for r in seen if r["hook"] == "on_route"}
    assert sorted(routes) == sorted(s.step_id for s in record.steps)
    for step in record.steps:
        route = routes[step.step_id]
        assert (route["capability"], route["engine"], route["queue"]) == ("rlb", "rlb/a", "cap.rlb.a")
        assert route["strategy"] == "load_balanced" and route["reason"] == step.route["reason"]
        assert 0 <= route["decided_in"] < 5
    started = [r["event"] for r in seen if r["hook"] == "on_step_start"]
    assert len(started) == 4 and {(s["engine"], s["queue"], s["capability"]) for s in started} == {
        ("rlb/a", "cap.rlb.a", "rlb")
    }
