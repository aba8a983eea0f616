"""Compiled graphs kept by the shape of their canvas: a run whose canvas has the shape of an
earlier run's gets a copy of that run's graph with its own argument values put in, instead of
a new compilation.

A definition's ``build`` runs for every start (it may make a different canvas for different
inputs, or for the same inputs at another time); what is reused is only the compilation of
what it returned. The shape of a canvas (its *skeleton*, shape_slots.py) is the canvas as
JSON with the positional and keyword arguments of its task signatures left out: task names,
how many arguments and which keywords, options, nested chains, groups and chords, links and
errbacks all stay in it. The key is that skeleton together with what else the compilation
reads, given by the caller as ``context`` (the workflow's name and version, the generation of
the registries of capabilities, engines and compensations).

A shape is kept as a template only when its compilation is proven to put each argument
value in one place, as a literal argument of one step, and nowhere else: the canvas is
compiled a second time with a unique marker in every slot, and the two graphs must be the
same but for the slots. A shape that fails the proof (a compilation that reads an argument)
is kept by the whole canvas instead, to the byte, as before. A canvas that does not
serialise (an argument that is not JSON: the compiler refuses it with its own error) or that
expands by the live engines at compile time (``parallel_capability``) is compiled every time.
A hit is checked against the step tasks the graph was compiled with: when one of them was
registered anew since (another task object under its name), the canvas is compiled again.

The copy is the kept graph unpickled with the run's own values put in: equal to what a
compilation returns, to the types of the values (a tuple stays a tuple), and the caller's
own, so that it may change it (priorities, options) without touching the kept one. A graph
that does not pickle is not kept.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.shape_slots import Slot, find_slots, skeleton
from canvasflow.workflows.runtime.wire import PARALLEL_TASK

KEPT = 256  # shapes kept per process, the least recently used dropped first

Compile = Callable[[Any], StepGraph]
Key = tuple[Hashable, str, str]  # (context, "shape" or "canvas", its JSON)


@dataclass(frozen=True)
class _Kept:
    blob: bytes  # the graph, pickled
    used: dict[str, Any]  # the step tasks it was compiled with, by name
    slots: tuple[Slot, ...] | None  # where each argument value goes; None: kept for one canvas


class ShapeCache:
    """Graphs by skeleton or by whole canvas (see ``Key``), most recently used last."""

    def __init__(self, size: int = KEPT) -> None:
        self.size = size
        self._kept: OrderedDict[Key, _Kept] = OrderedDict()
        self._lock = threading.Lock()  # a worker of the threads pool compiles in several threads
        self.hits = 0
        self.misses = 0  # compilations of a canvas a caller asked for

    def compiled(
        self, context: Hashable, canvas: Any, compile: Compile, tasks: Mapping[str, Any]
    ) -> StepGraph:
        """The graph of ``canvas``: a copy of the one kept for its shape with its values put
        in, or ``compile(canvas)`` (then kept). ``tasks`` is the app's task registry (a kept
        graph whose step tasks were registered anew is compiled again)."""
        shaped = _shape(canvas)
        if shaped is None:
            return self._compile(canvas, compile)
        shape, values = shaped
        key = (context, "shape", shape)
        found = self._fresh(key, tasks)
        if found is not None and found.slots is not None:
            return self._copy(found, values)
        if found is not None:  # a shape the proof refused: kept by the whole canvas
            whole = fingerprint(canvas)
            exact = self._fresh((context, "canvas", whole), tasks) if whole is not None else None
            if exact is not None:
                return self._copy(exact, [])
            graph = self._compile(canvas, compile)
            if whole is not None and (blob := _pickled(graph)) is not None:
                self._keep((context, "canvas", whole), blob, graph, tasks, ())
            return graph
        graph = self._compile(canvas, compile)
        blob = _pickled(graph)
        if blob is None:  # not kept: not worth proving its slots either
            return graph
        slots = find_slots(canvas, graph, values, compile)
        self._keep(key, blob, graph, tasks, slots)
        if slots is None and (whole := fingerprint(canvas)) is not None:
            self._keep((context, "canvas", whole), blob, graph, tasks, ())
        return graph

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()

    # -- parts ---------------------------------------------------------------------------
    def _compile(self, canvas: Any, compile: Compile) -> StepGraph:
        self.misses += 1
        return compile(canvas)

    def _fresh(self, key: Key, tasks: Mapping[str, Any]) -> _Kept | None:
        with self._lock:
            found = self._kept.get(key)
            if found is None or not all(tasks.get(name) is task for name, task in found.used.items()):
                return None
            self._kept.move_to_end(key)
            return found

    def _copy(self, kept: _Kept, values: list[Any]) -> StepGraph:
        self.hits += 1
        copy: StepGraph = pickle.loads(kept.blob)
        for slot, value in zip(kept.slots or (), values, strict=True):
            slot.put(copy, value)
        return copy

    def _keep(
        self,
        key: Key,
        blob: bytes,
        graph: StepGraph,
        tasks: Mapping[str, Any],
        slots: tuple[Slot, ...] | None,
    ) -> None:
        used = {n.task: tasks.get(n.task) for n in graph.steps.values()}
        for eb in graph.errbacks:
            name = eb.signature.get("task")
            if isinstance(name, str):
                used[name] = tasks.get(name)
        with self._lock:
            self._kept[key] = _Kept(blob, used, slots)
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)


def _pickled(graph: StepGraph) -> bytes | None:
    """The graph pickled, or None when it does not pickle (then it is not kept)."""
    try:
        return pickle.dumps(graph, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def _shape(canvas: Any) -> tuple[str, list[Any]] | None:
    """The canvas's skeleton as JSON and the values of its slots, in order; None when it
    cannot be kept (see ``fingerprint``; the values must be JSON too)."""
    try:
        tree, values = skeleton(canvas)
        json.dumps(values)
    except (TypeError, ValueError, RecursionError):
        return None
    text = fingerprint(tree)
    return None if text is None else (text, values)


def fingerprint(canvas: Any) -> str | None:
    """The canvas (or a skeleton) as JSON, or None when it cannot be kept: not JSON, or
    expanded by the live engines when compiled (``parallel_capability``: never the same twice)."""
    try:
        text = json.dumps(canvas, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None
    return None if PARALLEL_TASK in text else text


shapes = ShapeCache()
