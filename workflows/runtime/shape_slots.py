"""The skeleton of a canvas and the slots its argument values fill in a compiled graph
(used by shapes.py to reuse one compilation for every canvas of a shape).

The skeleton is the canvas with each positional and keyword argument of a task signature
replaced by a hole; chains, groups and chords are walked into, and everything else (task
names, the number of arguments and their keywords, options, links, errbacks, the arguments of
a chain or group themselves, canvasflow's special steps whole) stays as written.

A slot says where one hole's value goes in the compiled graph: a literal positional or
keyword argument of one step. :func:`find_slots` proves it by compiling the canvas again
with a unique marker in every hole: each marker must come out as one literal argument of one
step, the real compilation must hold the real value there, and the two graphs must be the
same once those places are blanked. Otherwise the compilation reads or copies a value, and
the shape has no slots (None).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from canvasflow.workflows.runtime.graph import StepGraph, lit
from canvasflow.workflows.runtime.wire import MAP_TASK, PARALLEL_TASK, SIGNAL_TASK, SLEEP_TASK, WORKFLOW_TASK

HOLE = "\u0000"  # a hole in a skeleton (only ever at a task signature's argument position)
# steps the compiler builds from their argument values (a map's mapper, a child workflow's
# name...): kept whole in the skeleton
WHOLE = frozenset({MAP_TASK, SIGNAL_TASK, SLEEP_TASK, WORKFLOW_TASK, PARALLEL_TASK})


@dataclass(frozen=True)
class Slot:
    """A literal argument of step ``step``: positional (``at`` an index) or keyword (a name)."""

    step: str
    at: int | str

    def put(self, graph: StepGraph, value: Any) -> None:
        node = graph.steps[self.step]
        if isinstance(self.at, int):
            node.args[self.at] = lit(value)
        else:
            node.kwargs[self.at] = lit(value)


def skeleton(canvas: Any) -> tuple[Any, list[Any]]:
    """The canvas's skeleton (plain data) and the values of its holes, in order."""
    values: list[Any] = []

    def hole(value: Any) -> str:
        values.append(value)
        return HOLE

    return _rebuilt(canvas, hole), values


def find_slots(
    canvas: Any, graph: StepGraph, values: list[Any], compile: Callable[[Any], StepGraph]
) -> tuple[Slot, ...] | None:
    """The slot of each of ``values`` (the holes of ``canvas``, which compiled to ``graph``),
    or None when the compilation does not just place them (see the module's doc)."""
    if not values:
        return ()
    token = uuid.uuid4().hex
    markers = iter(range(len(values)))
    marked = _rebuilt(canvas, lambda _: f"{HOLE}{token}:{next(markers)}{HOLE}")
    try:
        other = compile(marked)
    except Exception:  # a compilation that reads a value may refuse a marker
        return None
    found: dict[int, Slot] = {}
    for node in other.steps.values():
        places: list[tuple[int | str, Any]] = [*enumerate(node.args), *node.kwargs.items()]
        for at, expr in places:
            index = _marker(expr, token)
            if index is not None:
                if index in found:  # one value in two places
                    return None
                found[index] = Slot(node.id, at)
    if len(found) != len(values):  # a value the compilation did not place as an argument
        return None
    slots = tuple(found[i] for i in range(len(values)))
    for slot, value in zip(slots, values, strict=True):
        placed = graph.steps.get(slot.step)
        if placed is None or _at(placed.args, placed.kwargs, slot.at) != lit(value):
            return None
    return slots if _blanked(graph, slots) == _blanked(other, slots) else None


def _rebuilt(node: Any, fill: Callable[[Any], Any]) -> Any:
    """``node`` as plain data, each argument of a task signature replaced by ``fill(value)``."""
    if not isinstance(node, Mapping) or not isinstance(node.get("task"), str):
        return node
    kind, inner = node.get("subtask_type"), node.get("kwargs")
    if kind is None:
        args = node.get("args") or ()
        if (
            node["task"] in WHOLE
            or not isinstance(args, list | tuple)
            or not isinstance(inner or {}, Mapping)
        ):
            return node
        return {
            **node,
            "args": [fill(a) for a in args],
            "kwargs": {k: fill(v) for k, v in (inner or {}).items()},
        }
    if not isinstance(inner, Mapping):
        return node
    if kind in ("chain", "group") and isinstance(inner.get("tasks"), list | tuple):
        return {**node, "kwargs": {**inner, "tasks": [_rebuilt(t, fill) for t in inner["tasks"]]}}
    if kind == "chord":
        header = inner.get("header")
        header = (
            [_rebuilt(t, fill) for t in header]
            if isinstance(header, list | tuple)
            else _rebuilt(header, fill)
        )
        return {**node, "kwargs": {**inner, "header": header, "body": _rebuilt(inner.get("body"), fill)}}
    return node


def _marker(expr: Any, token: str) -> int | None:
    value = expr.get("v") if isinstance(expr, dict) and len(expr) == 1 else None
    prefix = f"{HOLE}{token}:"
    if not isinstance(value, str) or not value.startswith(prefix) or not value.endswith(HOLE):
        return None
    number = value[len(prefix) : -1]
    return int(number) if number.isdigit() else None


def _at(args: list[Any], kwargs: dict[str, Any], at: int | str) -> Any:
    if isinstance(at, int):
        return args[at] if at < len(args) else None
    return kwargs.get(at)


def _blanked(graph: StepGraph, slots: tuple[Slot, ...]) -> dict[str, Any]:
    """``graph`` as JSON with every slot set to None (the graph itself is not changed); each
    slot is known to exist in ``graph``."""
    data = graph.to_json()  # a node's args and kwargs are fresh containers
    nodes = {n["id"]: n for n in data["steps"]}
    for slot in slots:
        node = nodes[slot.step]
        node["args" if isinstance(slot.at, int) else "kwargs"][slot.at] = None
    return data
