"""Heartbeats and the recovery sweep: no run waits on the Redis transport's visibility timeout."""

from __future__ import annotations

import re
import signal
import time
import uuid

import pytest
from celery import chain, group

from canvasflow.workers.beats import beats, is_alive, is_held, live_workers
from canvasflow.workflows import Workflow, start
from canvasflow.workflows.authoring.patterns import map_reduce
from canvasflow.workflows.runtime.context import runtime
from tests.faults.outage import MODULES
from tests.faults.steps import counts, items, paced, slow_item, total
from tests.faults.test_killed_workers import QUEUES, running_step, wait_for, workflow
from tests.integration.saga import effects
from tests.integration.sagacheck import new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

# the production default: a message a dead worker took comes back by itself only after an hour
HOUR = {"CANVASFLOW_VISIBILITY_TIMEOUT": "3600"}
FAST = {
    "CANVASFLOW_HEARTBEAT_INTERVAL": "1",
    "CANVASFLOW_HEARTBEAT_TTL": "4",
    "CANVASFLOW_SWEEP_INTERVAL": "1",
}


def test_heartbeat_names_the_node_its_pool_and_the_tasks_it_holds(celery_worker_factory):
    w = celery_worker_factory(
        queues=QUEUES, concurrency=2, extra_env={"CANVASFLOW_HEARTBEAT_INTERVAL": "0.5"}
    )
    rt = runtime()
    wait_for(lambda: w.hostname in live_workers(rt), timeout=15)
    pool = wait_for(lambda: w.pool_pids)
    assert is_alive(rt, w.hostname, w.pid) and is_alive(rt, w.hostname, pool[0])
    assert not is_alive(rt, w.hostname, 1) and not is_alive(rt, "nobody@nowhere")

    log = new_log()
    s = step_of(log)
    run = start(workflow(lambda: chain(s("slow", sleep=3.0), s("b"))))
    task_id = wait_for(lambda: (running_step(run.id, "0.act") or {}).get("task_id"))
    assert wait_for(lambda: task_id in beats(rt)[w.hostname].tasks, timeout=5)
    assert is_held(rt, task_id)
    assert run.wait(30).status == "succeeded"
    assert wait_for(lambda: not is_held(rt, task_id), timeout=5)

    w.stop()  # a clean stop clears its heartbeat at once
    assert w.hostname not in live_workers(rt)


def test_steps_waiting_in_a_rate_limit_bucket_are_held_and_not_sent_again(redis_url, celery_worker_factory):
    """Celery's ``rate_limit`` keeps received messages in the worker, in a token bucket, before
    they reach the pool (not in its reserved requests): the heartbeat lists them as held, so the
    sweep (fast here: it judges a step lost within 2-3 s) does not publish them again while they
    wait their turn (up to 6 s)."""
    w = celery_worker_factory(
        queues=QUEUES, concurrency=1, extra_env={**FAST, "CANVASFLOW_WORKFLOW_MODULES": MODULES}
    )
    counter = f"counter:{uuid.uuid4().hex}"
    labels = [f"p{i}" for i in range(4)]
    run = start(
        workflow(lambda: group(paced.s(label=x, counter=counter, counter_url=redis_url) for x in labels))
    )
    record = run.wait(60)
    assert record.status == "succeeded", record.error
    assert counts(redis_url, counter) == dict.fromkeys(labels, 1)
    logged = w.read_log()
    received = re.findall(r"Task faults\.paced\[([^\]]+)\] received", logged)
    assert sorted(received) == sorted(set(received)) and len(received) == len(labels), received
    assert "re-dispatching a lost step" not in logged


def test_whole_worker_killed_mid_step_finishes_within_a_minute_with_the_default_visibility_timeout(
    celery_worker_factory,
):
    """Default heartbeat (5 s, TTL 15 s) and sweep (10 s) settings; visibility timeout one hour."""
    first = celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=HOUR)
    log = new_log()
    s = step_of(log)
    run = start(workflow(lambda: chain(s("a"), s("slow", sleep=4.0), s("c"))))
    wait_for(lambda: running_step(run.id, "1.act"))
    first.kill_group(signal.SIGKILL)  # the whole node, as a crashed host: its message stays unacked
    first.process.wait(10)

    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=HOUR)
    began = time.monotonic()
    record = run.wait(75)
    took = time.monotonic() - began
    assert record.status == "succeeded", record.error
    assert took < 60, f"took {took:.0f}s after the new worker started"
    assert effects(log) == ["do:a", "do:slow", "do:c"]  # the killed delivery never wrote its effect
    assert record.step("1.act").attempts == 2
    assert record.step("2.act").attempts == 1


def test_map_chunk_held_by_a_killed_worker_is_sent_again_alone(redis_url, celery_worker_factory):
    env = {**HOUR, **FAST, "CANVASFLOW_WORKFLOW_MODULES": MODULES}
    first = celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=env)
    counter = f"counter:{uuid.uuid4().hex}"
    mapper = slow_item.s(counter=counter, counter_url=redis_url, sleep=1.0)
    canvas = map_reduce(mapper, total.s(), items_from=items.s(6), chunk_size=1)
    run = start(Workflow(f"t.mapkill.{uuid.uuid4().hex[:8]}", "1", build=lambda: canvas).name)
    rt = runtime()
    graph = wait_for(lambda: rt.state.graph_json(run.id) and rt.graph(run.id, 1))
    map_id = next(sid for sid, n in graph.steps.items() if n.kind == "map")

    def later_chunk_running() -> str | None:
        states = rt.state.step_states(run.id)
        return next(
            (
                u
                for u, st in states.items()
                if u.startswith(f"{map_id}#") and st == "running" and u[-2:] != "#0"
            ),
            None,
        )

    killed = wait_for(later_chunk_running, timeout=30)
    done_before = {int(i) for i in rt.state.chunk_results(run.id, map_id)}
    first.kill_group(signal.SIGKILL)
    first.process.wait(10)
    assert rt.state.step_states(run.id)[killed] == "running"

    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)
    # within heartbeats, not the backlog's grace (CANVASFLOW_QUEUED_GRACE, 60 s): the killed chunk
    # was seen waiting in its queue before the worker took it (it took 57 s that way)
    record = run.wait(25)
    assert record.status == "succeeded", record.error
    assert record.result == sum(range(6))
    ran = counts(redis_url, counter)
    assert set(ran) == {f"item{i}" for i in range(6)}
    assert all(ran[f"item{i}"] == 1 for i in done_before), ran  # completed chunks never ran again
