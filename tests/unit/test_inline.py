"""The in-process runner: no Redis, no worker; the same results and rollbacks as a worker gives."""

from __future__ import annotations

from typing import Any

import pytest
from celery import chain, chord, group

from canvasflow.compensation import compensates
from canvasflow.config.celery_app import app
from canvasflow.config.errors import InputError
from canvasflow.testing import run_inline
from canvasflow.workers.step import step
from canvasflow.workflows import Workflow, map_reduce, result, wait_signal
from canvasflow.workflows import input as wf_input
from tests.integration.corpus import SHAPES

EFFECTS: list[str] = []
TRIES: dict[str, int] = {}

# each shape's result under a real worker (test_canvas_corpus checks inline == worker there too)
CORPUS = {
    "single": 5,
    "chain": 35,
    "chain_immutable": [14, "x"],
    "chain_in_chain": [7],
    "group": [2, 4, 9],
    "group_nested_group": [2, 4, 6, 8],
    "group_of_chains": [4, [4]],
    "chord": [[2, 4, 6]],
    "chord_chain_body": 60,
    "chord_group_body": [[[2, 4]], 6],
    "chord_chain_in_header": [[10, 4]],
    "chord_in_chord_header": [[6, 20]],
    "chord_nested_group_header": [[2, 4, 6]],
    "chain_to_group": [3, 4, [2]],
    "chain_group_task": [[3, 6]],
    "chain_to_chord": 9,
    "chain_of_groups": [[[[2, 4]], 6]],
    "chord_in_group_in_chain": [[7, 6]],
    "group_of_chords": [6, [[4, 9]]],
    "one_member_group_in_chain": [10],
    "group_with_chain_ending_in_group": [[3, 4], 10],
    "chain_ending_in_chord_then_group": [7, 8],
    "pipeline_pattern": [8],
    "scatter_gather_pattern": [[2, 6, 0]],
    "map_reduce_pattern": 135,
    "map_reduce_empty": [[]],
}


@step(name="inline.act", capability="inline")
def act(*parents: Any, label: str, fail: bool = False) -> str:
    if fail:
        EFFECTS.append(f"fail:{label}")
        raise RuntimeError(f"{label} failed on purpose")
    EFFECTS.append(f"do:{label}")
    return label


@compensates(act, name="inline.undo_act", retries=1)
def undo_act(result: str, *parents: Any, label: str, fail: bool = False) -> None:
    if label == "stubborn":
        EFFECTS.append(f"undofail:{label}")
        raise RuntimeError("cannot undo")
    EFFECTS.append(f"undo:{label}")


@step(name="inline.flaky", capability="inline", retries=3, retry_backoff=False)
def flaky(key: str, fails: int) -> int:
    TRIES[key] = TRIES.get(key, 0) + 1
    if TRIES[key] <= fails:
        raise ConnectionError("try again")
    return TRIES[key]


@step(name="inline.optional", capability="inline", on_failure="continue", fallback="fallback")
def optional(*parents: Any) -> str:
    raise RuntimeError("optional step failed")


@step(name="inline.square", capability="inline")
def square(item: int, fail_on: int | None = None) -> int:
    if item == fail_on:
        raise RuntimeError(f"item {item} failed")
    EFFECTS.append(f"do:item{item}")
    return item * item


@compensates(square, name="inline.unsquare", retries=0)
def unsquare(result: int, item: int, fail_on: int | None = None) -> None:
    EFFECTS.append(f"undo:item{item}")


@step(name="inline.items", capability="inline")
def items(n: int) -> list[int]:
    return list(range(n))


@step(name="inline.total", capability="inline")
def total(values: list[int]) -> int:
    return sum(values)


@app.task(name="inline.on_error")
def on_error(request: Any, exc: BaseException, traceback: Any, label: str) -> None:
    EFFECTS.append(f"errback:{label}:{request.task}")


@app.task(name="inline.on_error_old")
def on_error_old(task_id: str, *, label: str) -> None:
    EFFECTS.append(f"errback:{label}")


@pytest.fixture(autouse=True)
def _clean() -> None:
    EFFECTS.clear()
    TRIES.clear()


def wf(build: Any, **options: Any) -> Workflow:
    return Workflow(f"inline.{len(EFFECTS)}.{id(build)}", "1", build=build, register=False, **options)


@pytest.mark.parametrize(("shape_id", "factory", "documented"), SHAPES, ids=[s[0] for s in SHAPES])
def test_the_canvas_corpus_gives_a_workers_results(shape_id, factory, documented):
    record = run_inline(Workflow(f"inline.corpus.{shape_id}", "1", build=factory, register=False))
    assert record.status == "succeeded", record.error
    assert record.result == CORPUS[shape_id]
    if documented is not None:
        assert record.result == documented
    assert all(s.status == "succeeded" for s in record.steps)


def test_a_failed_saga_compensates_newest_first():
    saga = wf(lambda: chain(act.s(label="reserve"), act.s(label="charge"), act.s(label="ship", fail=True)))
    record = run_inline(saga)
    assert record.status == "compensated"
    assert EFFECTS == ["do:reserve", "do:charge", "fail:ship", "undo:charge", "undo:reserve"]
    assert record.error["step"] == "2.act" and record.error["type"] == "RuntimeError"
    assert [(s.status, s.compensation_status) for s in record.steps] == [
        ("succeeded", "compensated"),
        ("succeeded", "compensated"),
        ("failed", None),
    ]


def test_siblings_in_flight_complete_and_are_compensated_and_later_steps_never_run():
    shape = wf(
        lambda: chain(
            act.s(label="first"),
            chord([act.s(label="a"), act.s(label="b", fail=True), act.s(label="c")], act.s(label="body")),
        )
    )
    record = run_inline(shape)
    assert record.status == "compensated"
    assert EFFECTS[:4] == ["do:first", "do:a", "fail:b", "do:c"]
    assert sorted(EFFECTS[4:6]) == ["undo:a", "undo:c"] and EFFECTS[6:] == ["undo:first"]
    assert record.step("1.b.act").status == "skipped"


def test_revoke_policy_skips_the_siblings_not_yet_run():
    shape = wf(lambda: group(act.s(label="a", fail=True), act.s(label="b")), inflight="revoke")
    record = run_inline(shape)
    assert EFFECTS == ["fail:a"] and record.status == "failed"  # nothing completed, nothing undone


def test_a_compensation_that_keeps_failing_leaves_the_run_compensation_failed():
    shape = wf(lambda: chain(act.s(label="ok"), act.s(label="stubborn"), act.s(label="x", fail=True)))
    record = run_inline(shape)
    assert record.status == "compensation_failed"
    assert EFFECTS[3:] == ["undofail:stubborn", "undofail:stubborn", "undo:ok"]  # 1 retry, then the rest
    assert record.step("1.act").compensation_error["message"] == "cannot undo"


def test_retries_and_fallbacks():
    record = run_inline(wf(lambda: chain(flaky.s("k", 2), act.s(label="after"))))
    assert record.status == "succeeded" and record.step("0.flaky").attempts == 3
    failed = run_inline(wf(lambda: flaky.s("never", 9)))
    assert failed.status == "failed" and failed.step("flaky").attempts == 4  # no compensation: failed
    record = run_inline(wf(lambda: chain(act.s(label="a"), optional.s(), act.s(label="b", fail=True))))
    assert record.step("1.optional").result == "fallback" and record.step("1.optional").error["fallback"]
    assert record.step("1.optional").compensation_status is None and EFFECTS[-1] == "undo:a"


def test_a_failed_map_undoes_every_item_that_completed():
    flow = wf(lambda: map_reduce(square.s(fail_on=4), total.s(), items_from=items.s(6), chunk_size=3))
    record = run_inline(flow)
    assert record.status == "compensated"
    assert record.step("1.map#0").status == "succeeded" and record.step("1.map#1").status == "failed"
    undone = [e for e in EFFECTS if e.startswith("undo:")]
    assert sorted(undone) == ["undo:item0", "undo:item1", "undo:item2", "undo:item3"]
    # within a chunk newest item first; chunks are independent of each other
    assert undone.index("undo:item2") < undone.index("undo:item1") < undone.index("undo:item0")
    assert [s.compensation_status for s in record.steps if s.step_id.startswith("1.map#")] == [
        "compensated"
    ] * 2


def test_errbacks_run_once_in_both_celery_styles():
    def build() -> Any:
        c = chord([act.s(label="a", fail=True), act.s(label="b", fail=True)], act.s(label="body"))
        c.link_error(on_error.s(label="new"))
        return chain(act.s(label="first"), c).on_error(on_error_old.s(label="old"))

    run_inline(wf(build))
    assert sorted(e for e in EFFECTS if e.startswith("errback")) == ["errback:new:inline.act", "errback:old"]


def test_signals_dag_form_and_sub_workflows():
    waiting = wf(lambda: chain(act.s(label="a"), wait_signal("approved"), act.s(label="b")))
    assert run_inline(waiting).status == "waiting"
    done = run_inline(waiting, signals={"approved": {"by": "ann"}})
    assert done.status == "succeeded" and done.step("1.wait_signal").result == {"by": "ann"}

    dag = Workflow(
        "inline.dag",
        "1",
        steps={"x": act.s(label=wf_input("name")), "y": act.s(label="y"), "z": total.s(result("w"))}
        | {"w": items.s(wf_input("n"))},
        register=False,
    )
    assert run_inline(dag, {"name": "x", "n": 4}).result == {"x": "x", "y": "y", "z": 6}
    child = Workflow("inline.child", "1", build=lambda n: chain(items.s(n), total.s()))
    parent = wf(lambda: chain(items.s(3), total.s(), child.s(result_as="n")))
    assert run_inline(parent).result == 3  # items(3) -> 3 -> child(n=3) -> 0+1+2
    assert child.name


def test_inputs_are_validated_first():
    def build(n: int) -> Any:
        return items.s(n)

    flow = Workflow("inline.typed", "1", build=build, register=False)
    with pytest.raises(InputError, match="n"):
        run_inline(flow, {"n": "many"})
    assert EFFECTS == []
