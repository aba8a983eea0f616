"""Where a run's messages would go, checked before it starts: every capability known.

:func:`capability_needs` reads a compiled graph for the capability of each step sent to a
capability's shared queue: task steps, the mapper of a map step, and the steps of a child
workflow whose inputs are known at start (its own start checks it again, with its inputs).
Routed steps are left to the router's preflight (their capability has engines). A step given
its queue explicitly, and a task that is no step, go where they were told.
"""

from __future__ import annotations

from canvasflow.config.errors import CanvasflowError
from canvasflow.config.queues import queue_for
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workflows.authoring.definition import registry as workflows
from canvasflow.workflows.runtime.graph import StepGraph

MAX_DEPTH = 4  # child workflows looked into (a workflow may start itself)


def capability_needs(graph: StepGraph, prefix: str = "", depth: int = 0) -> dict[str, list[str]]:
    """Capability -> the steps (child steps as ``<step>/<child step>``) whose messages go to its queue."""
    needs: dict[str, list[str]] = {}
    for sid, node in graph.steps.items():
        if node.kind == "workflow":
            for child_cap, steps in _child_needs(node.spec, f"{prefix}{sid}/", depth).items():
                needs.setdefault(child_cap, []).extend(steps)
            continue
        if "routing" in node.options or node.kind not in ("task", "map"):
            continue
        name = node.spec["mapper"]["task"] if node.kind == "map" else node.task
        cap = capabilities.capability_of(name)
        if cap is not None and node.options.get("queue") == queue_for(cap):
            needs.setdefault(cap, []).append(prefix + sid)
    return needs


def _child_needs(spec: dict[str, object], prefix: str, depth: int) -> dict[str, list[str]]:
    if depth >= MAX_DEPTH or spec.get("result_as"):  # its inputs are known only when it starts
        return {}
    try:
        wf = workflows.get(str(spec["workflow"]))
        graph = wf.compile(wf.validate(spec.get("inputs") or {}))
    except CanvasflowError:  # its own start refuses it, saying why
        return {}
    return capability_needs(graph, prefix, depth + 1)
