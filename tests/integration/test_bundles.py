"""Fan-out bundles (workflows/runtime/bundles.py): a wide fan-out travels as fewer messages, and
every sibling is still a step of its own: claimed, journaled, compensated, recovered."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import chain, chord, group

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.wire import task_id_for
from canvasflow.workflows.store.records import RunRecord
from tests.integration.saga import effects
from tests.integration.sagacheck import assert_rolled_back, labels, new_log, ran_in, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("broker")]  # Redis and RabbitMQ

QUEUES = ["cap.demo", "canvasflow", "canvasflow.control"]
SPREAD = {"CANVASFLOW_FANOUT_SPREAD": "4"}  # fan-outs of 8 or more are bundled


@pytest.fixture
def client_spread() -> Iterator[None]:
    """The client publishes the roots: it bundles with the same spread as the workers."""
    settings = runtime().settings
    before = settings.fanout_spread
    settings.fanout_spread = 4
    yield
    settings.fanout_spread = before


def run(build: Callable[[], Any], timeout: float = 60, **options: Any) -> RunRecord:
    wf = Workflow(f"t.bundle.{uuid.uuid4().hex[:8]}", "1", build=build, **options)
    return start(wf.name).wait(timeout)


def ran_by(record: RunRecord) -> dict[str, str]:
    """Label -> the task id of the message whose delivery ran that step."""
    by_label = labels(StepGraph.from_json(record.graph))
    return {by_label[sid]: tid for sid, tid in ran_in(record).items() if sid in by_label}


def own(record: RunRecord, label: str) -> str:
    sid = {v: k for k, v in labels(StepGraph.from_json(record.graph)).items()}[label]
    return task_id_for(record.id, sid, record.generation)


def test_a_chord_header_started_by_the_client_runs_in_bundles(client_spread, celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=SPREAD)
    log = new_log()
    s = step_of(log)
    members = [f"m{i}" for i in range(20)]
    record = run(lambda: chord([s(m) for m in members], s("body")))

    assert record.status == "succeeded", record.error
    assert sorted(effects(log)[:20]) == sorted(f"do:{m}" for m in members)
    assert effects(log)[20:] == ["do:body"]
    deliveries = ran_by(record)
    messages = {deliveries[m] for m in members}
    assert len(messages) == 4  # 20 siblings in bundles of ceil(20 / 4) = 5
    assert messages <= {own(record, m) for m in members}  # each bundle is its first sibling's message
    assert all(st.attempts == 1 and st.status == "succeeded" for st in record.steps)


def test_a_group_released_by_a_step_is_bundled_by_the_worker(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=SPREAD)
    log = new_log()
    s = step_of(log)
    members = [f"g{i}" for i in range(12)]
    record = run(lambda: chain(s("a"), group(s(m) for m in members), s("z")))

    assert record.status == "succeeded", record.error
    deliveries = ran_by(record)
    assert len({deliveries[m] for m in members}) < len(members)
    assert effects(log)[0] == "do:a" and effects(log)[-1] == "do:z"


def test_a_failing_sibling_in_a_bundle_rolls_back_every_completed_step(client_spread, celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=SPREAD)
    log = new_log()
    s = step_of(log)
    record = run(lambda: chord([s(f"m{i}", fail=i == 6) for i in range(10)], s("body")))

    assert record.status == "compensated", record.status
    assert "fail:m6" in effects(log)
    assert "do:body" not in effects(log)
    assert_rolled_back(record, log)  # every completed sibling undone once, nothing else
    statuses = {st.step_id: st.status for st in record.steps}
    assert list(statuses.values()).count("failed") == 1


def test_with_no_budget_a_bundle_publishes_its_siblings_at_once(client_spread, celery_worker_factory):
    """``fuse_budget`` 0: the siblings go back to the broker as messages of their own."""
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env={**SPREAD, "CANVASFLOW_FUSE_BUDGET": "0"})
    log = new_log()
    s = step_of(log)
    members = [f"m{i}" for i in range(8)]
    record = run(lambda: chord([s(m) for m in members], s("body")))

    assert record.status == "succeeded", record.error
    assert {m: ran_by(record)[m] for m in members} == {m: own(record, m) for m in members}


def _running(run_id: str, step_id: str) -> dict[str, Any] | None:
    rt = runtime()
    if rt.state.step_states(run_id).get(step_id) != "running":
        return None
    return rt.state.step_info(run_id).get(step_id)


@pytest.mark.faults
def test_a_process_killed_inside_a_bundle_leaves_no_sibling_behind(client_spread, celery_worker_factory):
    """The bundle's message comes back: what completed stays done, the killed sibling runs again,
    the ones never started run now."""
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env={**SPREAD, "CANVASFLOW_FUSE_BUDGET": "30"})
    log = new_log()
    s = step_of(log)
    members = [s(f"m{i}", sleep=2.0 if i == 1 else 0.0) for i in range(8)]  # bundles of 2
    wf = Workflow(f"t.bundle.{uuid.uuid4().hex[:8]}", "1", build=lambda: chord(members, s("body")))
    handle = start(wf.name)
    graph = StepGraph.from_json(runtime().store.get_run(handle.id).graph)
    slow = next(sid for sid, label in labels(graph).items() if label == "m1")
    deadline = time.monotonic() + 30
    while not (info := _running(handle.id, slow)):
        assert time.monotonic() < deadline, "the slow sibling never started"
        time.sleep(0.05)
    assert info.get("fused"), info  # it runs inside m0's message
    os.kill(info["pid"], signal.SIGKILL)

    record = handle.wait(90)
    assert record.status == "succeeded", record.error
    done = [e for e in effects(log) if e.startswith("do:m")]
    assert sorted(done) == sorted(f"do:m{i}" for i in range(8))  # once each (m1 died before its effect)
    assert record.step(slow).attempts == 2
