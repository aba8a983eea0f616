"""Faults: workers killed mid-step or mid-compensation, and duplicated deliveries."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import chain

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from tests.integration.saga import crashes, effects
from tests.integration.sagacheck import new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults, pytest.mark.usefixtures("broker")]

QUEUES = ["cap.demo", "canvasflow", "canvasflow.control"]


def wait_for(probe: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def workflow(build: Callable[[], Any], **options: Any) -> str:
    return Workflow(f"t.fault.{uuid.uuid4().hex[:8]}", "1", build=build, **options).name


def running_step(run_id: str, step_id: str) -> dict[str, Any] | None:
    if runtime().state.step_states(run_id).get(step_id) != "running":
        return None
    return runtime().state.step_info(run_id).get(step_id)


def test_pool_process_killed_mid_step_is_redelivered_and_completes_once(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    run = start(workflow(lambda: chain(s("a"), s("slow", sleep=2.0), s("c"))))
    info = wait_for(lambda: running_step(run.id, "1.act"))
    os.kill(info["pid"], signal.SIGKILL)

    record = run.wait(60)
    assert record.status == "succeeded", record.error
    assert record.step("1.act").attempts == 2
    assert effects(log) == ["do:a", "do:slow", "do:c"]


def test_whole_worker_killed_mid_step_the_next_worker_finishes_the_run(celery_worker_factory):
    """The killed worker never acked; after the visibility timeout another worker gets the step."""
    first = celery_worker_factory(queues=QUEUES, concurrency=1)
    log = new_log()
    s = step_of(log)
    run = start(workflow(lambda: chain(s("a"), s("slow", sleep=3.0), s("c"))))
    wait_for(lambda: running_step(run.id, "1.act"))
    first.kill(signal.SIGKILL)
    celery_worker_factory(queues=QUEUES, concurrency=2)

    record = run.wait(90)
    assert record.status == "succeeded", record.error
    assert effects(log) == ["do:a", "do:slow", "do:c"]
    assert record.step("2.act").attempts == 1


@pytest.mark.brokers("amqp")
def test_whole_worker_killed_on_rabbitmq_its_step_comes_back_at_once(broker, celery_worker_factory):
    """RabbitMQ requeues a dead consumer's unacknowledged message as soon as its connection
    drops: with the visibility timeout at an hour, the run still ends in seconds."""
    hour = {"CANVASFLOW_VISIBILITY_TIMEOUT": "3600"}
    first = celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=hour)
    log = new_log()
    s = step_of(log)
    run = start(workflow(lambda: chain(s("a"), s("slow", sleep=5.0), s("c"))))
    wait_for(lambda: running_step(run.id, "1.act"))
    first.kill_group(signal.SIGKILL)  # the whole host, pool included
    celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=hour)
    began = time.monotonic()

    record = run.wait(60)
    assert record.status == "succeeded", record.error
    assert time.monotonic() - began < 30  # the step ran again at once (its body sleeps 5 s)
    assert record.step("1.act").attempts == 2
    assert effects(log) == ["do:a", "do:slow", "do:c"]


def test_duplicated_step_message_completes_once_and_releases_successors_once(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    run = start(workflow(lambda: chain(s("a", sleep=0.5), s("b"), s("c"))))
    rt = runtime()
    graph = rt.graph(run.id, 1)
    node = graph.steps["0.act"]
    # the broker delivers the first step twice (same id, same headers)
    from canvasflow.workflows.runtime.sending import send_step

    send_step(rt, run.id, 1, node, [], {k: v["v"] for k, v in node.kwargs.items()})

    record = run.wait(60)
    assert record.status == "succeeded"
    entries = effects(log)
    assert entries.count("do:b") == 1 and entries.count("do:c") == 1
    assert 1 <= entries.count("do:a") <= 2  # the body may run twice; completion is once
    assert record.step("0.act").status == "succeeded" and record.step("0.act").result == "a"
    time.sleep(0.5)  # let every worker process's journal writer flush
    events = [e for e in rt.store.events(run.id) if e["event"] == "step.succeeded"]
    assert [e["step_id"] for e in events].count("0.act") <= 1


def test_duplicate_of_a_completed_step_changes_nothing(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    run = start(workflow(lambda: chain(s("a"), s("b"))))
    record = run.wait(30)
    assert record.status == "succeeded"
    rt = runtime()
    node = rt.graph(run.id, 1).steps["0.act"]
    from canvasflow.workflows.runtime.sending import send_step

    send_step(rt, run.id, 1, node, [], {k: v["v"] for k, v in node.kwargs.items()})
    time.sleep(1.5)
    assert effects(log) == ["do:a", "do:b"]
    assert rt.store.get_run(run.id).status == "succeeded"


def test_a_step_that_kills_its_process_every_time_fails_after_its_crashes_and_rolls_back(
    celery_worker_factory,
):
    """Celery delivers a step whose process died again (``task_reject_on_worker_lost``), for ever
    when the step itself kills it. After ``CANVASFLOW_STEP_MAX_CRASHES`` deliveries in a row died
    in it, the next one fails the step with StepCrashed, without running it, and the saga rolls
    back what completed."""
    celery_worker_factory(queues=QUEUES, concurrency=1, extra_env={"CANVASFLOW_STEP_MAX_CRASHES": "3"})
    log = new_log()
    s = step_of(log)
    run = start(workflow(lambda: chain(s("a"), crashes.s(label="boom", log=log), s("c"))))
    record = run.wait(90)

    assert record.status == "compensated", (record.status, record.error)
    assert record.error["type"] == "StepCrashed", record.error
    assert (
        "3 deliveries" in record.error["message"] and f"canvasflow resume {run.id}" in record.error["message"]
    )
    assert effects(log) == ["do:a", "run:boom", "run:boom", "run:boom", "undo:a"]  # three runs, not a fourth
    assert record.step("1.crashes").status == "failed"
