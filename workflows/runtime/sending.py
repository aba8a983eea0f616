"""Send a step's message: its header, its route (decided now), its arguments resolved.

Every publisher of steps goes through :func:`send_step`: the executor for the successors a
completion released, fusion for a step it could not run here, the fallback to another engine,
the recovery sweep. :func:`send_ready` publishes plain steps (task and workflow kinds) of a
ready set with their arguments resolved from the run's results; the executor's ``dispatch``
adds what only it decides (bundles, map and signal steps, deadlines).
"""

from __future__ import annotations

import reprlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from canvasflow.workers.routing.decisions import pinned_route
from canvasflow.workers.routing.router import route_step, workflow_inputs
from canvasflow.workflows.runtime import events, publishing, secrets
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.graph import StepGraph, StepNode, resolve
from canvasflow.workflows.runtime.wire import ACTION_PREFIX, HEADER, WORKFLOW_TASK, task_id_for

# what Flower and the worker's log show of a map chunk's call: its mapper and first items (a
# fan-out of 1,000 chunks of 100 spent 2/3 of its time in Celery's repr of every item)
_BRIEF = reprlib.Repr()
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 8
_BRIEF.maxstring = _BRIEF.maxother = 80


def results_for(
    rt: Runtime, run_id: str, nodes: Iterable[StepNode], known: Mapping[str, Any] | None = None
) -> Mapping[str, Any]:
    """The results ``nodes`` read: those in ``known``, the rest from the run's state (one read;
    none, and no copy of ``known``, when it holds them all: the common case on the hot path)."""
    have = known or {}
    needed = {r for node in nodes for r in node.reads()} - have.keys()
    if not needed:
        return have
    return {**have, **rt.state.results(run_id, sorted(needed))}


def arguments(
    rt: Runtime, run_id: str, node: StepNode, known: Mapping[str, Any] | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """``node``'s args and kwargs, resolved from the results in ``known`` and, for the rest, the
    run's state."""
    results = results_for(rt, run_id, [node], known)
    return [resolve(a, results) for a in node.args], {k: resolve(v, results) for k, v in node.kwargs.items()}


def send_ready(
    rt: Runtime,
    run_id: str,
    generation: int,
    graph: StepGraph,
    step_ids: Sequence[str],
    known: Mapping[str, Any] | None = None,
    then: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Publish task and workflow steps with their arguments resolved, in one batch; ``then`` maps
    a step to the siblings its message carries (bundles.py)."""
    if not step_ids:
        return
    results = results_for(rt, run_id, [graph.steps[sid] for sid in step_ids], known)
    carried = then or {}
    # one producer, one pipeline: a message and its task-sent event in one round trip (publishing.py)
    with publishing.batch(rt.app, rt.settings.publish_batch_size, len(step_ids)):
        for sid in step_ids:
            node = graph.steps[sid]
            args, kwargs = arguments(rt, run_id, node, results)
            if node.kind == "workflow":
                send_step(rt, run_id, generation, node, args, {**node.spec, **kwargs})
            else:
                send_step(rt, run_id, generation, node, args, kwargs, then=tuple(carried.get(sid, ())))


def send_step(
    rt: Runtime,
    run_id: str,
    generation: int,
    node: StepNode,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    chunk: int | None = None,
    task: str | None = None,
    exclude: tuple[str, ...] = (),
    then: Sequence[str] = (),
    route: dict[str, Any] | None = None,
    past: Sequence[dict[str, Any]] = (),
) -> None:
    """Publish one step; ``route`` is the router's decision when it was made already (fusion.py),
    ``past`` the decisions it supersedes, each with its outcome (workers/routing/decisions.py)."""
    header: dict[str, Any] = {"run": run_id, "step": node.id, "gen": generation}
    if chunk is not None:
        header["chunk"] = chunk
    if then:  # siblings this message's worker runs after it (bundles.py)
        header["then"] = list(then)
    options = node.options
    if "routing" in options:  # the router picks the engine now, as the step becomes ready
        route = route or decide_route(rt, run_id, node, exclude)
        header["route"] = {**route, "tried": list(exclude), "past": list(past)} if exclude else route
        options = {k: v for k, v in options.items() if k != "routing"}
        options["queue"] = route["queue"]
        if route.get("workflow") and chunk is None:  # a workflow engine: the step runs as its child run
            task, kwargs = (
                WORKFLOW_TASK,
                {"workflow": route["workflow"], "inputs": workflow_inputs(args, kwargs)},
            )
            args, options["queue"] = [], rt.settings.control_queue
    elif node.task.startswith(ACTION_PREFIX) and (pinned := pinned_route(options.get("queue"))):
        header["route"] = route = pinned  # a parallel_capability member: its engine chosen at start
    name = task or node.task
    shown = secrets.masked(rt.app.tasks.get(name), args, kwargs)
    if shown is not None:  # what events, Flower and logs show of the call
        options = {**options, "argsrepr": repr(shown[0]), "kwargsrepr": repr(shown[1])}
    elif chunk is not None:  # the first items only: Celery's saferepr walks every item of every chunk
        options = {**options, "argsrepr": _BRIEF.repr(args), "kwargsrepr": _BRIEF.repr(kwargs)}
    headers: dict[str, Any] = {HEADER: header}
    carrier = events.step_dispatched(rt, run_id, node, chunk, name, generation, options.get("queue"), route)
    if carrier:  # e.g. a W3C traceparent: the worker's step events hand it back
        headers[events.CARRIER_HEADER] = carrier
    rt.app.send_task(
        name,
        args=args,
        kwargs=kwargs,
        task_id=task_id_for(run_id, node.id, generation, chunk),
        headers=headers,
        link_error=[rt.errback],
        ignore_result=True,
        add_to_parent=False,
        **options,
        **publishing.send_options(task or node.task, options.get("queue")),
    )


def decide_route(
    rt: Runtime,
    run_id: str,
    node: StepNode,
    exclude: tuple[str, ...] = (),
    *,
    prefer: str | None = None,
    count: bool = True,
) -> dict[str, Any]:
    """The router's choice of engine for a routed step that became ready (announced to middleware);
    ``prefer`` and ``count``: see :func:`canvasflow.workers.routing.router.route_step`."""
    began = time.perf_counter()
    routing = node.options["routing"]
    route = route_step(rt.redis, rt.settings, node.id, routing, exclude, prefer=prefer, count=count)
    events.routed(run_id, node.id, node.options["routing"], route, time.perf_counter() - began, exclude)
    route["at"] = round(time.time(), 3)  # publish time: route_timeout measures the wait from it
    return route
