"""Every step in Flower (workflows/runtime/taskevents.py): a step fused into another's delivery,
or carried by a fan-out bundle, is a task of its own in a real Flower, found by the task id the
journal and the console give for it, with its arguments, runtime, worker and outcome."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import chain, chord

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.console.queries import run_view
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.wire import task_id_for
from canvasflow.workflows.store.records import RunRecord
from tests.harness.flower import get_json
from tests.integration.fusion_steps import flaky, pay
from tests.integration.sagacheck import labels, new_log, ran_in, step_of
from tests.integration.test_foundation import eventually

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.flower]

QUEUES = ["cap.demo", "canvasflow", "canvasflow.control"]
CARD = "4111111111111111"


def run(build: Callable[[], Any], timeout: float = 60) -> RunRecord:
    wf = Workflow(f"t.flower.{uuid.uuid4().hex[:8]}", "1", build=build)
    return start(wf.name).wait(timeout)


def by_label(record: RunRecord) -> dict[str, str]:
    """Label -> step id."""
    return {label: sid for sid, label in labels(StepGraph.from_json(record.graph)).items()}


def flower_tasks(flower: str, ids: list[str], state: str) -> dict[str, dict[str, Any]]:
    """Flower's ``/api/task/info`` of each id, once every one of them is in ``state``."""

    def seen() -> dict[str, dict[str, Any]] | None:
        listed = get_json(f"{flower}/api/tasks?limit=10000")
        if not all((listed.get(t) or {}).get("state") == state for t in ids):
            return None
        return {t: get_json(f"{flower}/api/task/info/{t}") for t in ids}

    found = eventually(seen, timeout=30)
    if not found:
        listed = get_json(f"{flower}/api/tasks?limit=10000")
        missing = {t: (listed.get(t) or {}).get("state") for t in ids}
        pytest.fail(f"Flower does not list every step as {state}: {missing}")
    return found


def test_a_chain_of_fused_steps_is_five_tasks_in_flower(celery_worker_factory, flower: str) -> None:
    worker = celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), s("b"), pay.s(card_number=CARD, amount=5), s("d"), s("e")))
    assert record.status == "succeeded", record.error
    assert len(record.steps) == 5

    # the journal names each step's own task, and the history the delivery it ran in: one
    own = {st.step_id: task_id_for(record.id, st.step_id, record.generation) for st in record.steps}
    assert {st.step_id: st.task_id for st in record.steps} == own
    first = own[by_label(record)["a"]]
    assert set(ran_in(record).values()) == {first}, ran_in(record)

    tasks = flower_tasks(flower, list(own.values()), "SUCCESS")
    for sid, tid in own.items():
        task = tasks[tid]
        assert task["uuid"] == tid
        assert task["name"] == record.step(sid).task
        assert task["worker"] == worker.hostname
        assert task["runtime"] is not None and task["runtime"] >= 0
        assert task["received"] and task["started"] and task["succeeded"]
        if tid != first:
            assert task["parent_id"] == first and task["root_id"] == first
    b = tasks[own[by_label(record)["b"]]]
    assert b["args"] == "['a']" and "'label': 'b'" in b["kwargs"]
    assert b["result"] == "'b'"
    paid = next(t for t in tasks.values() if t["name"] == "fuse.pay")
    assert "'card_number': '***'" in paid["kwargs"] and "'amount': 5" in paid["kwargs"]
    assert CARD not in repr(tasks)

    # the console's Flower link of every step opens that step's own task page
    links = {row.step["step_id"]: row.flower for row in run_view(record.id, flower).rows if row.step}
    assert links == {sid: f"{flower}/task/{tid}" for sid, tid in own.items()}
    for sid, link in links.items():
        with urllib.request.urlopen(link, timeout=10) as page:
            body = page.read().decode()
        assert page.status == 200 and own[sid] in body and record.step(sid).task in body


def test_a_bundled_chord_header_is_a_task_per_member_in_flower(celery_worker_factory, flower: str) -> None:
    from canvasflow.workflows.runtime.context import runtime

    settings = runtime().settings  # the client publishes the header: it bundles with the workers' spread
    before = settings.fanout_spread
    settings.fanout_spread = 4
    try:
        worker = celery_worker_factory(
            queues=QUEUES,
            concurrency=2,
            extra_env={"CANVASFLOW_FANOUT_SPREAD": "4", "CANVASFLOW_FUSE_BUDGET": "30"},
        )
        log = new_log()
        s = step_of(log)
        record = run(lambda: chord([s(f"m{i}") for i in range(12)], s("body")))
    finally:
        settings.fanout_spread = before
    assert record.status == "succeeded", record.error

    names = by_label(record)
    own = {label: task_id_for(record.id, sid, record.generation) for label, sid in names.items()}
    assert {st.step_id: st.task_id for st in record.steps} == {names[k]: v for k, v in own.items()}
    held = ran_in(record)
    carried = [m for m, sid in names.items() if m != "body" and held[sid] != own[m]]
    assert len(carried) == 8, held  # 12 members in 4 messages of 3 (no budget cut on a loaded machine)

    tasks = flower_tasks(flower, list(own.values()), "SUCCESS")
    for label in carried:
        task = tasks[own[label]]
        assert task["worker"] == worker.hostname
        assert f"'label': '{label}'" in task["kwargs"]
        assert task["runtime"] is not None
        assert task["parent_id"] == held[names[label]]  # the bundle's message


def test_a_failing_fused_step_is_a_failed_task_in_flower(celery_worker_factory, flower: str) -> None:
    worker = celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    record = run(lambda: chain(s("a"), s("b"), s("c", fail=True)))
    assert record.status == "compensated", record.status
    names = by_label(record)
    failed = record.step(names["c"])
    own = task_id_for(record.id, names["c"], record.generation)
    assert failed.status == "failed" and failed.task_id == own
    assert ran_in(record)[names["c"]] == task_id_for(record.id, names["a"], record.generation)

    task = flower_tasks(flower, [own], "FAILURE")[own]
    assert task["worker"] == worker.hostname
    assert "c failed on purpose" in task["exception"]
    assert "RuntimeError" in task["traceback"]


def test_a_fused_step_retried_by_celery_shows_its_retry_in_flower(celery_worker_factory, flower: str) -> None:
    worker = celery_worker_factory(queues=QUEUES, concurrency=2)
    log = new_log()
    s = step_of(log)
    key = f"flower-flaky:{uuid.uuid4().hex}"
    record = run(lambda: chain(s("a"), flaky.s(key=key)))
    assert record.status == "succeeded", record.error
    sid = next(st.step_id for st in record.steps if "flaky" in st.step_id)
    own = task_id_for(record.id, sid, record.generation)
    assert record.step(sid).attempts == 2 and record.step(sid).task_id == own

    task = flower_tasks(flower, [own], "SUCCESS")[own]
    assert task["retried"], json.dumps(task)  # the fused attempt's task-retried, then its own message's run
    assert task["worker"] == worker.hostname
    assert "first try fails" in (task["exception"] or "")


def test_a_map_chunk_shows_its_mapper_and_first_items_in_flower(celery_worker_factory, flower: str) -> None:
    """A chunk's message carries a brief rendering of its call (the mapper, the first items):
    Celery's own repr of every item of every chunk was 2/3 of a fan-out's time."""
    from canvasflow.workers.demo import echo, mul, xsum
    from canvasflow.workflows.authoring.patterns import map_reduce

    celery_worker_factory(queues=QUEUES, concurrency=2)
    record = run(lambda: map_reduce(mul.s(3), xsum.s(), items_from=echo.s(*range(60)), chunk_size=20))
    assert record.status == "succeeded", record.error
    assert record.result == 3 * sum(range(60))
    chunks = sorted(st.step_id for st in record.steps if st.kind == "chunk")
    assert len(chunks) == 3
    ids = [st.task_id for st in record.steps if st.kind == "chunk"]
    tasks = flower_tasks(flower, [t for t in ids if t], "SUCCESS")
    shown = sorted(task["args"] for task in tasks.values())
    assert all("demo.mul" in a and a.endswith(", ...]]") for a in shown), shown
    assert "[0, 1, 2, 3, 4, 5, 6, 7, ...]" in shown[0] and "20, 21, 22, 23, 24, 25, 26, 27" in shown[1]
