"""Flower as `canvasflow flower` / `make flower` start it: basic auth from the settings, and
persistent state; a step's task is found by its id, which names the run and the step."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from celery import chain, chord

from canvasflow.workers.demo import fetch_order, price_item, total
from canvasflow.workflows import Workflow, start
from tests.harness.flower import FlowerProcess, get_json, spawn_canvasflow_flower
from tests.harness.plugin import ROOT, HarnessSession, attach_log
from tests.integration.test_foundation import eventually

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.flower]
AUTH = ("admin", "flower-pw-42")


def _fetch_and_price(order_id: int) -> object:
    return chain(fetch_order.s(order_id), chord([price_item.s(i) for i in range(3)], total.s()))


def status_without_credentials(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_flower_needs_credentials_shows_a_steps_task_and_keeps_its_state(
    request: pytest.FixtureRequest, worker: Any, canvasflow_session: HarnessSession, tmp_path: Any
) -> None:
    import port_for

    env = {
        **os.environ,
        "CANVASFLOW_FLOWER_BASIC_AUTH": ":".join(AUTH),
        "CANVASFLOW_FLOWER_DB": str(tmp_path / "flower.db"),
    }

    def flower() -> FlowerProcess:
        proc = spawn_canvasflow_flower(
            port=port_for.select_random(), log_dir=canvasflow_session.log_dir, cwd=ROOT, env=env, auth=AUTH
        )
        attach_log(request.node, "flower", proc.log_path)
        return proc

    first = flower()
    try:
        first.wait_ready()
        for path in ("/", "/tasks", "/api/tasks"):
            assert status_without_credentials(f"{first.url}{path}") == 401, path
        # a workflow of the demo's steps under a name of its own: another test module of this
        # process (the README's) registers an ``order_total`` of its own, on other queues
        flow = Workflow(f"flower.order.{uuid.uuid4().hex[:8]}", "1", build=_fetch_and_price)
        record = start(flow.name, {"order_id": 7}).wait(60)
        assert record.status == "succeeded"
        step = record.step("0.fetch_order")
        assert step.task_id == f"{record.id}-0.fetch_order-g1"  # the run and the step, in Flower's id column

        def seen() -> dict[str, Any] | None:
            task = get_json(f"{first.url}/api/tasks?limit=1000", auth=AUTH).get(step.task_id)
            return task if task and task.get("state") == "SUCCESS" else None

        task = eventually(seen, timeout=30)
        assert task, f"Flower did not list {step.task_id} as SUCCESS"
        assert task["name"] == "demo.fetch_order" and task["worker"] == worker.hostname
    finally:
        first.stop()  # Flower saves its state as it stops
    assert (tmp_path / "flower.db").exists() or list(tmp_path.glob("flower.db*"))

    again = flower()  # a restarted Flower still knows the task from its saved state
    try:
        again.wait_ready()
        kept = get_json(f"{again.url}/api/tasks?limit=1000", auth=AUTH).get(step.task_id)
        assert kept and kept["state"] == "SUCCESS" and kept["name"] == "demo.fetch_order"
    finally:
        again.stop()
