"""Priorities on both brokers: with 1,000 low-priority steps queued on one capability, the
steps of a high-priority run start before the backlog drains.

Redis: kombu keeps a list per priority step and reads the most urgent first (canvasflow sends
``9 - priority``). RabbitMQ: the queues are declared with ``x-max-priority``
(``CANVASFLOW_QUEUE_MAX_PRIORITY=9``); the test runs in a vhost of its own, as an operator
would start on fresh queues (a queue declared without the argument cannot take it later)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest
from celery import chain, group

from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import StartRefused
from canvasflow.workers.demo import add, fail, sleep
from canvasflow.workflows import Workflow, get_run, start
from canvasflow.workflows.cli.main import main
from canvasflow.workflows.runtime.context import runtime
from tests.harness.plugin import HarnessSession
from tests.harness.rabbitmq import plan_rabbit
from tests.integration import priority_steps

pytestmark = [pytest.mark.redis, pytest.mark.worker]

BACKLOG = 1_000
STEP_S = 0.02


@pytest.fixture(params=["redis", "amqp"])
def prio_broker(request: pytest.FixtureRequest, canvasflow_session: HarnessSession) -> Iterator[str]:
    """The broker this test runs on; RabbitMQ in a vhost of its own, queues with x-max-priority."""
    if request.param == "redis":
        yield request.param
        return
    target = plan_rabbit(owner=f"{canvasflow_session.rabbit.vhost}-prio")
    url = target.ensure_running()
    os.environ["CANVASFLOW_QUEUE_MAX_PRIORITY"] = "9"
    canvasflow_session.use_broker(url)
    _declare_again()
    try:
        yield request.param
    finally:
        os.environ.pop("CANVASFLOW_QUEUE_MAX_PRIORITY", None)
        canvasflow_session.use_broker(canvasflow_session.env["CANVASFLOW_BROKER_URL"])
        _declare_again()
        target.close()


def _declare_again() -> None:
    """Make this process's app build its queue declarations again from its (changed) settings:
    Celery builds them once and keeps them, and its message sender holds them."""
    amqp = current_app().amqp
    for cached in ("queues", "default_queue", "send_task_message", "router"):
        amqp.__dict__.pop(cached, None)
    amqp.flush_routes()


def completed(run_id: str) -> int:
    return sum(st == "succeeded" for st in runtime().state.step_states(run_id).values())


def test_a_high_priority_run_passes_a_backlog_of_low_priority_steps(prio_broker, celery_worker_factory):
    tag = uuid.uuid4().hex[:8]
    backlog = Workflow(
        f"t.prio.backlog.{tag}", "1", build=lambda: group(sleep.s(STEP_S) for _ in range(BACKLOG))
    )
    urgent = Workflow(f"t.prio.urgent.{tag}", "1", build=lambda: chain(add.s(1, 1), add.s(1), add.s(1)))
    slow = start(backlog.name, priority=0)  # queued before any worker runs
    celery_worker_factory(concurrency=2)
    began = time.monotonic()
    while completed(slow.id) < 50:  # the worker is busy with the backlog
        assert time.monotonic() - began < 60, "the backlog does not move"
        time.sleep(0.05)
    at_start = completed(slow.id)
    t0 = time.monotonic()
    fast = start(urgent.name, priority=9)
    same = start(urgent.name, priority=0)  # the control: as urgent, on the backlog's priority
    done = fast.wait(60)
    latency = time.monotonic() - t0
    passed = completed(slow.id) - at_start
    assert done.status == "succeeded" and done.result == 4
    assert same.wait(300).status == "succeeded"
    same_latency, same_passed = time.monotonic() - t0, completed(slow.id) - at_start
    slow.wait(300)
    drain = time.monotonic() - began
    print(
        f"\n{prio_broker}: the urgent run (3 chained steps, priority 9) took {latency:.2f}s while {passed} "
        f"backlog steps completed; the same run at priority 0 took {same_latency:.1f}s ({same_passed} "
        f"backlog steps before it); the backlog of {BACKLOG} took {drain:.1f}s"
    )
    # loosely: the urgent run's steps went before the backlog's (each of its 3 steps waits for
    # at most what the worker had already taken), while the control waited behind the backlog
    assert passed < 100, f"{passed} backlog steps completed while the urgent run ran"
    assert same_passed > BACKLOG / 2, f"the control passed the backlog too ({same_passed} before it)"
    assert latency < same_latency / 4
    assert all(s.status == "succeeded" for s in get_run(fast.id).steps)


def test_every_step_and_compensation_of_a_run_carries_its_priority(worker):
    log = f"prio-log:{uuid.uuid4().hex}"
    wf = Workflow(
        f"t.prio.saga.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: chain(priority_steps.act.s(log=log), priority_steps.act.s(log=log), fail.s()),
    )
    record = start(wf.name, priority=5).wait(60)
    deadline = time.monotonic() + 30
    while (record := get_run(record.id)).status == "compensating":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert record.status == "compensated"
    sent = 9 - 5 if runtime().app.conf.broker_url.startswith("redis") else 5  # kombu's Redis: lowest first
    entries = [e.decode() for e in runtime().redis.lrange(log, 0, -1)]
    assert entries == [f"do:{sent}", f"do:{sent}", f"undo:{sent}", f"undo:{sent}"]
    assert {n["options"].get("priority") for n in record.graph["steps"]} == {sent}
    assert record.graph["options"]["priority"] == 5  # the run's own, kept for a resume or a move


def test_a_child_run_takes_its_parents_priority(worker):
    parent = start("tests.parent", priority=3).wait(60)
    assert parent.status == "succeeded"
    (child,) = runtime().store.children(parent.id)
    child_graph = get_run(child.id).graph
    assert child_graph["options"]["priority"] == 3
    sent = 9 - 3 if runtime().app.conf.broker_url.startswith("redis") else 3
    assert {n["options"].get("priority") for n in child_graph["steps"]} == {sent}


def test_canvasflow_start_takes_a_priority(worker, capsys):
    assert main(["start", "tests.child", "--input", '{"x": 1}', "--priority", "4", "--wait", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded"
    assert get_run(shown["id"]).graph["options"]["priority"] == 4


def test_a_start_message_takes_a_priority_and_refuses_a_bad_one(worker):
    app = current_app()
    sent = app.send_task(
        "canvasflow.start", kwargs={"workflow": "tests.child", "inputs": {"x": 1}, "priority": 8}
    )
    run_id = sent.get(timeout=30)["run_id"]
    assert get_run(run_id).graph["options"]["priority"] == 8
    refused = app.send_task(
        "canvasflow.start", kwargs={"workflow": "tests.child", "inputs": {"x": 1}, "priority": 10}
    )
    with pytest.raises(StartRefused, match="priority must be an integer from 0 to 9"):
        refused.get(timeout=30)
