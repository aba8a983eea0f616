"""Chain fusion (workflows/runtime/fusion.py): a step released for the queue its predecessor
came from runs in that predecessor's delivery, and everything a user sees of a step holds."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import chain, group

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.wire import task_id_for
from canvasflow.workflows.store.records import RunRecord
from tests.integration.fusion_steps import OTHER_CAPABILITY, elsewhere, flaky, flaky_later, kind, pair
from tests.integration.saga import effects
from tests.integration.sagacheck import assert_rolled_back, labels, new_log, ran_in, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]

QUEUES = ["cap.demo", f"cap.{OTHER_CAPABILITY}", "canvasflow", "canvasflow.control"]


def run(build: Callable[[], Any], timeout: float = 60) -> RunRecord:
    wf = Workflow(f"t.fuse.{uuid.uuid4().hex[:8]}", "1", build=build)
    return start(wf.name).wait(timeout)


def deliveries(record: RunRecord) -> dict[str, str]:
    """Label (or step id) -> the task id of the Celery message that ran the step."""
    by_label = labels(StepGraph.from_json(record.graph))
    return {by_label.get(sid, sid): tid for sid, tid in ran_in(record).items()}


def own_id(record: RunRecord, label: str) -> str:
    by_label = {v: k for k, v in labels(StepGraph.from_json(record.graph)).items()}
    return task_id_for(record.id, by_label[label], record.generation)


def test_a_chain_on_one_queue_runs_in_its_first_steps_delivery(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), s("b"), s("c"), s("d")))

    assert record.status == "succeeded", record.error
    assert record.result == "d"
    assert effects(log) == ["do:a", "do:b", "do:c", "do:d"]
    ran_by = deliveries(record)
    assert set(ran_by.values()) == {own_id(record, "a")}, ran_by
    assert [s.attempts for s in record.steps] == [1, 1, 1, 1]
    assert all(s.started_at and s.finished_at for s in record.steps)


def test_fuse_hops_bounds_the_steps_per_delivery_and_zero_turns_fusion_off(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env={"CANVASFLOW_FUSE_HOPS": "1"})
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), s("b"), s("c"), s("d")))
    assert record.status == "succeeded", record.error
    ran_by = deliveries(record)
    assert ran_by == {
        "a": own_id(record, "a"),
        "b": own_id(record, "a"),
        "c": own_id(record, "c"),
        "d": own_id(record, "c"),
    }


def test_with_fusion_off_every_step_is_a_message_of_its_own(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env={"CANVASFLOW_FUSE_HOPS": "0"})
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), s("b"), s("c")))
    assert record.status == "succeeded", record.error
    assert deliveries(record) == {label: own_id(record, label) for label in ("a", "b", "c")}


def test_a_fused_step_gets_its_argument_as_a_message_would_carry_it(celery_worker_factory):
    """A tuple result reaches the next step as a list, fused or not (JSON, as raw Celery)."""
    celery_worker_factory(queues=QUEUES, concurrency=2)
    record = run(lambda: chain(pair.s(1), kind.s()))
    assert record.status == "succeeded", record.error
    assert record.result == "list"
    assert len(set(deliveries(record).values())) == 1  # fused


def test_a_step_for_a_queue_this_worker_does_not_consume_is_published(celery_worker_factory):
    celery_worker_factory(queues=["cap.demo", "canvasflow", "canvasflow.control"], concurrency=2)
    celery_worker_factory(queues=[f"cap.{OTHER_CAPABILITY}"], concurrency=1)
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), elsewhere.s(), s("c")))
    assert record.status == "succeeded", record.error
    by_step = {s.step_id: s for s in record.steps}
    other = next(sid for sid in by_step if "elsewhere" in sid)
    assert by_step[other].queue == f"cap.{OTHER_CAPABILITY}"
    assert by_step[other].task_id == task_id_for(record.id, other, record.generation)
    assert deliveries(record)["a"] == own_id(record, "a")
    assert deliveries(record)["c"] == own_id(record, "c")  # released by the other worker


def test_a_step_for_another_queue_this_worker_consumes_runs_here(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), elsewhere.s(), s("c")))
    assert record.status == "succeeded", record.error
    other = next(st for st in record.steps if "elsewhere" in st.step_id)
    assert other.queue == f"cap.{OTHER_CAPABILITY}"  # journaled with the queue it was bound for
    assert set(deliveries(record).values()) == {own_id(record, "a")}


def test_a_fused_step_that_fails_rolls_the_saga_back(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), s("b"), s("c", fail=True), s("d")))

    assert record.status == "compensated", record.status
    assert effects(log)[:3] == ["do:a", "do:b", "fail:c"]
    assert assert_rolled_back(record, log) == ["b", "a"]
    failed = [st for st in record.steps if st.status == "failed"]
    assert len(failed) == 1 and failed[0].error["message"] == "c failed on purpose"
    assert failed[0].task_id == own_id(record, "c")  # its own task, in Flower too
    assert deliveries(record)["c"] == own_id(record, "a")  # it ran fused into a's delivery
    assert "RuntimeError" in (failed[0].error.get("traceback") or "")


def test_a_fused_step_is_retried_by_celery_and_succeeds(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    key = f"fuse-flaky:{uuid.uuid4().hex}"
    record = run(lambda: chain(s("a"), flaky.s(key=key), s("c")))

    assert record.status == "succeeded", record.error
    by_step = {st.step_id: st for st in record.steps}
    retried = next(st for sid, st in by_step.items() if "flaky" in sid)
    assert retried.attempts == 2
    assert retried.result == "second try"
    assert effects(log) == ["do:a", "do:c"]


def test_a_fused_step_waiting_for_its_retry_is_not_taken_for_lost(celery_worker_factory):
    """The retry of a fused step is a message of the step's own id, held by a worker until its
    countdown: the sweep (fast here: it judges a step lost within 2-3 s) must see it held, not
    publish the step again: the retry runs once, when its countdown is over."""
    fast = {
        "CANVASFLOW_HEARTBEAT_INTERVAL": "1",
        "CANVASFLOW_HEARTBEAT_TTL": "4",
        "CANVASFLOW_SWEEP_INTERVAL": "1",
    }
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=fast)
    log = new_log()
    s = step_of(log)
    key = f"fuse-flaky-later:{uuid.uuid4().hex}"
    record = run(lambda: chain(s("a"), flaky_later.s(key=key), s("c")))

    assert record.status == "succeeded", record.error
    retried = next(st for st in record.steps if "flaky" in st.step_id)
    assert retried.result == "second try"
    began = [float(t) for t in runtime().redis.lrange(key, 0, -1)]
    assert len(began) == 2, f"the step's body ran {len(began)} times"
    assert began[1] - began[0] >= 5.5, f"the retry ran {began[1] - began[0]:.1f}s after the failure, not 6 s"
    assert retried.attempts == 2
    assert effects(log) == ["do:a", "do:c"]


def test_a_group_released_by_a_step_keeps_one_member_and_publishes_the_rest(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), group(s("b1"), s("b2"), s("b3")), s("z")))

    assert record.status == "succeeded", record.error
    assert sorted(effects(log)[1:4]) == ["do:b1", "do:b2", "do:b3"]
    ran_by = deliveries(record)
    members = [ran_by[m] for m in ("b1", "b2", "b3")]
    assert members.count(own_id(record, "a")) == 1  # one kept here, two published
    assert sorted(m for m in members if m != own_id(record, "a")) == sorted(
        own_id(record, m) for m in ("b1", "b2", "b3") if ran_by[m] != own_id(record, "a")
    )


def _fused_and_running(run_id: str, step_id: str) -> dict[str, Any] | None:
    rt = runtime()
    if rt.state.step_states(run_id).get(step_id) != "running":
        return None
    info = rt.state.step_info(run_id).get(step_id) or {}
    return info if info.get("fused") else None


@pytest.mark.faults
def test_a_pool_process_killed_in_a_fused_step_gets_the_step_run_again(celery_worker_factory):
    """The delivery's message was never acknowledged: it comes back, finds its own step done and
    dispatches the fused step its process left running."""
    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    wf = Workflow(
        f"t.fuse.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(s("a"), s("slow", sleep=2.0), s("c"))
    )
    handle = start(wf.name)
    deadline = time.monotonic() + 20
    while not (info := _fused_and_running(handle.id, "1.act")):
        assert time.monotonic() < deadline, "the slow step never ran fused"
        time.sleep(0.05)
    os.kill(info["pid"], signal.SIGKILL)

    record = handle.wait(60)
    assert record.status == "succeeded", record.error
    assert effects(log) == ["do:a", "do:slow", "do:c"]
    slow = record.step("1.act")
    assert slow.attempts == 2
    assert record.step("0.act").attempts == 1


def test_the_revoke_policy_stops_a_fused_step_by_its_delivery(celery_worker_factory):
    """``inflight="revoke"`` revokes the task id a running step's claim names: for a fused
    step, the delivery it runs in. The step is marked revoked and the rollback goes on."""
    from canvasflow.workflows import cancel, compensate

    celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    wf = Workflow(
        f"t.fuse.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: chain(s("a"), s("b", sleep=30)),
        inflight="revoke",
    )
    handle = start(wf.name)
    deadline = time.monotonic() + 20
    while not _fused_and_running(handle.id, "1.act"):
        assert time.monotonic() < deadline, "b never ran fused"
        time.sleep(0.05)
    assert cancel(handle.id, compensate=False).status == "cancelled"
    record = compensate(handle.id).wait(20)  # well before b's 30 s sleep would end
    assert record.status == "compensated", record.error
    assert effects(log) == ["do:a", "undo:a"]
    assert record.step("1.act").status != "succeeded"
