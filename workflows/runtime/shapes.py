"""Compiled graphs kept by the shape of their canvas: a run whose canvas is the same as an
earlier run's, to the byte, gets a copy of that run's graph instead of a new compilation.

A definition's ``build`` runs for every start (it may make a different canvas for different
inputs, or for the same inputs at another time); what is reused is only the compilation of
what it returned. The key is the canvas itself, serialised as JSON (a Signature is a dict:
task names, arguments, options, nested chains and groups, links and errbacks), together with
what else the compilation reads, given by the caller as ``context`` (the workflow's name and
version, the generation of the registries of capabilities, engines and compensations). A
canvas that does not serialise (an argument that is not JSON: the compiler refuses it with
its own error) or that expands by the live engines at compile time (``parallel_capability``)
is compiled every time. A hit is checked against the step tasks the graph was compiled with:
when one of them was registered anew since (another task object under its name), the canvas
is compiled again.

The copy is the kept graph unpickled: equal to what a compilation returns, to the types of the
values (a tuple stays a tuple), and the caller's own, so that it may change it (priorities,
options) without touching the kept one. A graph that does not pickle is not kept.
"""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.wire import PARALLEL_TASK

KEPT = 256  # shapes kept per process, the least recently used dropped first


class ShapeCache:
    """Graphs by (context, canvas JSON), most recently used last."""

    def __init__(self, size: int = KEPT) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[Hashable, str], tuple[bytes, dict[str, Any]]] = OrderedDict()
        self.hits = 0

    def compiled(
        self,
        context: Hashable,
        canvas: Any,
        compile: Callable[[Any], StepGraph],
        tasks: Mapping[str, Any],
    ) -> StepGraph:
        """The graph of ``canvas``: a copy of the one kept for its shape, or ``compile(canvas)``
        (then kept). ``tasks`` is the app's task registry (a kept graph whose step tasks were
        registered anew is compiled again)."""
        shape = fingerprint(canvas)
        if shape is None:
            return compile(canvas)
        key = (context, shape)
        found = self._kept.get(key)
        if found is not None:
            blob, used = found
            if all(tasks.get(name) is task for name, task in used.items()):
                self._kept.move_to_end(key)
                self.hits += 1
                copy: StepGraph = pickle.loads(blob)
                return copy
        graph = compile(canvas)
        try:
            blob = pickle.dumps(graph, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return graph
        used = {n.task: tasks.get(n.task) for n in graph.steps.values()}
        for eb in graph.errbacks:
            name = eb.signature.get("task")
            if isinstance(name, str):
                used[name] = tasks.get(name)
        self._kept[key] = (blob, used)
        self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return graph

    def clear(self) -> None:
        self._kept.clear()


def fingerprint(canvas: Any) -> str | None:
    """The canvas as JSON, or None when it cannot be kept by shape (see the module's doc)."""
    try:
        text = json.dumps(canvas, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None
    if PARALLEL_TASK in text:  # expanded by the live engines when compiled: never the same twice
        return None
    return text


shapes = ShapeCache()
