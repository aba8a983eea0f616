"""Compiled graphs kept by canvas shape (runtime/shapes.py, shape_slots.py): reused for a canvas
of the same shape (its own argument values put in) of the same definition version, compiled
anew for anything that could make them differ; every reuse equals a compilation."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from celery import chain, chord, current_app, group

from canvasflow.compensation.registry import registry as compensations
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workers.demo import add
from canvasflow.workflows.authoring.definition import Workflow
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.graph import StepGraph, StepNode
from canvasflow.workflows.runtime.shape_slots import Slot, find_slots, skeleton
from canvasflow.workflows.runtime.shapes import ShapeCache, fingerprint
from canvasflow.workflows.runtime.wire import PARALLEL_TASK

_names = itertools.count()


def _wf(build: Any, version: str = "1") -> Workflow:
    return Workflow(f"t.shapes.{next(_names)}", version, build=build, register=False)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the compilations of a run's canvas (cache misses) from now on."""
    misses = [0]
    real = ShapeCache._compile

    def compile(self: ShapeCache, canvas: Any, compile: Any) -> StepGraph:
        misses[0] += 1
        return real(self, canvas, compile)

    monkeypatch.setattr(ShapeCache, "_compile", compile)
    return misses


def _direct(wf: Workflow, values: dict[str, Any]) -> StepGraph:
    """What a compilation of ``wf``'s canvas for ``values`` gives, no cache."""
    return compile_canvas(wf.canvas(values), current_app)


def test_a_build_that_depends_on_its_inputs_never_gets_another_inputs_graph(monkeypatch: pytest.MonkeyPatch):
    def build(n: int, wide: bool = False) -> Any:
        if wide:
            return group(add.s(i, n) for i in range(n))
        return chain(*(add.s(i, n) for i in range(n)))

    wf = _wf(build)
    misses = _counting(monkeypatch)
    long3, wide3 = wf.compile({"n": 3, "wide": False}), wf.compile({"n": 3, "wide": True})
    long4 = wf.compile({"n": 4, "wide": False})
    assert [n.deps for n in wide3.steps.values()] == [[], [], []]
    assert len(long4.steps) == 4 and long3.to_json() != long4.to_json()
    assert misses[0] == 3
    again = wf.compile({"n": 3, "wide": False})  # the same canvas: the kept graph, a copy
    assert misses[0] == 3
    assert again == long3 and again is not long3  # equal to the compilation, types and all


def test_the_same_inputs_and_a_different_canvas_get_that_canvas_s_values(monkeypatch: pytest.MonkeyPatch):
    calls = itertools.count()

    def build(x: int) -> Any:  # not a function of its inputs alone: a new argument each call
        return add.s(x, next(calls))

    wf = _wf(build)
    misses = _counting(monkeypatch)
    first, second = wf.compile({"x": 1}), wf.compile({"x": 1})
    assert misses[0] == 1  # one shape
    assert [a["v"] for a in first.steps["add"].args] == [1, 0]
    assert [a["v"] for a in second.steps["add"].args] == [1, 1]


def test_runs_of_one_shape_with_other_values_compile_once_and_each_gets_its_own(
    monkeypatch: pytest.MonkeyPatch,
):
    def build(order: str, amount: float, notes: list[str]) -> Any:
        refund = add.si("refunds", 0).set(queue="cap.payments")  # an errback's arguments stay in the shape
        return chain(
            add.s(order, amount=amount),
            group(add.s(notes, i) for i in range(3)),
            chord([add.s(order), add.s((amount, order))], add.s(tag=order)),
            add.s(),
        ).on_error(refund)

    wf = _wf(build)
    misses = _counting(monkeypatch)
    inputs = [{"order": f"o-{i}", "amount": i * 1.5, "notes": [f"n{i}"] * i} for i in range(6)]
    graphs = [wf.compile(values) for values in inputs]
    assert misses[0] == 1
    for values, graph in zip(inputs, graphs, strict=True):
        direct = _direct(wf, values)
        direct.options.update(graph.options)
        assert graph == direct  # the values, their types (a tuple stays a tuple) and all
    assert graphs[1].steps["0.add"].kwargs == {"amount": {"v": 1.5}}


def test_a_shape_whose_compilation_reads_a_value_is_kept_by_the_whole_canvas():
    cache = ShapeCache()

    def compile(canvas: Any) -> StepGraph:  # copies its argument into the step's options
        value = canvas["args"][0]
        return StepGraph(
            {"a": StepNode("a", "t.a", args=[{"v": value}], options={"seen": value})}, {"r": "a"}
        )

    first = cache.compiled("ctx", {"task": "t.a", "args": [1], "kwargs": {}, "options": {}}, compile, {})
    second = cache.compiled("ctx", {"task": "t.a", "args": [2], "kwargs": {}, "options": {}}, compile, {})
    again = cache.compiled("ctx", {"task": "t.a", "args": [2], "kwargs": {}, "options": {}}, compile, {})
    assert (first.steps["a"].options, second.steps["a"].options) == ({"seen": 1}, {"seen": 2})
    assert again == second and cache.misses == 2 and cache.hits == 1


def test_find_slots_places_each_value_once():
    graph = compile_canvas(chain(add.s(1, 2), add.s(3)), current_app)
    canvas = chain(add.s(1, 2), add.s(3))
    tree, values = skeleton(canvas)
    assert values == [1, 2, 3]
    assert find_slots(canvas, graph, values, lambda c: compile_canvas(c, current_app)) == (
        Slot("0.add", 0),
        Slot("0.add", 1),
        Slot("1.add", 1),  # its first argument is the result of the step before
    )
    assert skeleton(chain(add.s(7, 8), add.s(9)))[0] == tree
    assert skeleton(chain(add.s(7, 8, 9), add.s(9)))[0] != tree  # another number of arguments


def test_a_new_version_does_not_reuse_the_old_versions_graph(monkeypatch: pytest.MonkeyPatch):
    def build(x: int) -> Any:
        return chain(add.s(x, 1), add.s(2))

    v1, v2 = _wf(build, "1"), Workflow(_wf(build).name, "2", build=build, register=False)
    misses = _counting(monkeypatch)
    v1.compile({"x": 1})
    v2.compile({"x": 1})
    assert misses[0] == 2
    assert v1._compiled_with(object())[:2] != v2._compiled_with(object())[:2]


def test_a_copy_can_be_changed_without_changing_the_kept_graph():
    wf = _wf(lambda x: chain(add.s(x, 1), add.s(2)))
    first = wf.compile({"x": 1})
    first.steps["0.add"].options["priority"] = 9
    first.options["run_priority"] = 9
    again = wf.compile({"x": 1})
    assert "priority" not in again.steps["0.add"].options
    assert "run_priority" not in again.options


def test_a_registration_since_compiles_again(monkeypatch: pytest.MonkeyPatch):
    wf = _wf(lambda x: chain(add.s(x, 1), add.s(2)))
    misses = _counting(monkeypatch)
    wf.compile({"x": 1})
    monkeypatch.setattr(capabilities, "generation", capabilities.generation + 1)
    wf.compile({"x": 1})
    monkeypatch.setattr(compensations, "generation", compensations.generation + 1)
    wf.compile({"x": 1})
    assert misses[0] == 3


def test_a_step_task_registered_anew_compiles_again():
    cache, compiled = ShapeCache(), [0]
    graph = StepGraph({"a": StepNode("a", "t.a")}, {"r": "a"})

    def compile(canvas: Any) -> StepGraph:
        compiled[0] += 1
        return graph

    tasks: dict[str, Any] = {"t.a": object()}
    canvas = {"task": "t.a", "args": [], "kwargs": {}, "options": {}}
    cache.compiled("ctx", canvas, compile, tasks)
    cache.compiled("ctx", canvas, compile, tasks)
    assert compiled[0] == 1
    tasks["t.a"] = object()  # another task object under the name
    cache.compiled("ctx", canvas, compile, tasks)
    assert compiled[0] == 2


def test_canvases_that_cannot_be_kept_by_shape():
    assert fingerprint({"task": "t", "args": [object()]}) is None  # not JSON: compiled (and refused) anew
    assert fingerprint({"task": PARALLEL_TASK, "args": []}) is None  # expanded by the live engines
    assert fingerprint(add.s(1, 2)) == fingerprint(add.s(1, 2))
    assert fingerprint(add.s(1, 2)) != fingerprint(add.s(1, 3))
    assert fingerprint(add.s(1, 2)) != fingerprint(add.s(1, 2).set(priority=3))


def test_the_cache_keeps_at_most_its_size():
    cache = ShapeCache(size=2)
    for i in range(5):
        cache.compiled("ctx", {"task": f"t{i}", "args": [i]}, lambda c: StepGraph({}, {"v": None}), {})
    assert len(cache._kept) == 2
