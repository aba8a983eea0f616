"""Actions: name what a workflow needs, not where it runs.

``@action("ocr")`` registers a handler of the action named after the function (or ``name=``)
for capability ``ocr``; the engines' workers import it. In a workflow:

* ``execute_action("ocr", "extract", payload)`` is one step that the router sends to
  whichever engine serves ``ocr`` (as any step of that capability);
* ``parallel_capability("ocr", "extract", payload, aggregate="all")``
  (:mod:`canvasflow.workflows.runtime.parallel`) runs the action on every engine of ``ocr``
  with a live worker and aggregates; with ``aggregate="first"`` each member's action task runs
  the race below (:func:`run_race`).

Each capability has one action task, ``canvasflow.action.<capability>``, whose body calls
the handler by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from celery.canvas import Signature

from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import RoutingError
from canvasflow.config.queues import engines_in
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workers.step import StepTask
from canvasflow.workflows.runtime.advance import complete
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.errors import error_info
from canvasflow.workflows.runtime.execution import context
from canvasflow.workflows.runtime.wire import ACTION_TASK, task_id_for

log = structlog.get_logger("canvasflow.routing")
RACE_KEY_TTL_S = 86_400

_handlers: dict[tuple[str, str], Callable[[Any], Any]] = {}


def action_task(capability: str) -> Any:
    """The capability's action task (registered on first use, in clients and workers alike)."""
    name = ACTION_TASK.format(capability)
    app = current_app()
    if name not in app.tasks:

        def run_action(action: str, payload: Any, race: bool = False) -> Any:
            handler = _handlers.get((capability, action))
            if handler is None:
                known = sorted(a for c, a in _handlers if c == capability)
                raise RoutingError(
                    f"no handler of action {action!r} for capability {capability!r} on this worker "
                    f"(it has {known}): import the module declaring @action({capability!r})"
                )
            if race:  # a member of parallel_capability(..., aggregate="first")
                return run_race(lambda: handler(payload))
            return handler(payload)

        def implementation_of(args: Any) -> str | None:
            """The handler this worker runs for the action in ``args`` (journaled with its route)."""
            handler = _handlers.get((capability, args[0])) if args else None
            return None if handler is None else f"{handler.__module__}.{handler.__qualname__}"

        app.task(
            run_action,
            name=name,
            base=StepTask,
            capability=capability,
            route=None,
            requires={},
            implementation_of=staticmethod(implementation_of),
        )
        capabilities.register(name, capability)
    return app.tasks[name]


def action(
    capability: str, name: str | None = None
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register ``fn(payload)`` as the handler of an action of ``capability``."""

    def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        _handlers[(capability, name or fn.__name__)] = fn
        action_task(capability)
        return fn

    return register


def execute_action(capability: str, action: str, payload: Any = None) -> Signature:
    """One routed step running ``action`` on an engine of ``capability``."""
    return action_task(capability).si(action, payload)


# -- the race of parallel_capability(..., aggregate="first"), in the member's worker -------------
def run_race(run: Callable[[], Any]) -> dict[str, Any]:
    """Run one member of a ``first`` race: ``{"won": True, ...}``, ``{"lost": ...}`` or ``{"error": ...}``."""
    ctx = context()
    rt = runtime()
    mine = _engine_of(ctx.queue)
    try:
        value = run()
    except Exception as exc:  # a failed member does not win; the others may
        log.warning("parallel_capability member failed", engine=mine, error=str(exc))
        return {"error": {**error_info(exc), "engine": mine}}
    graph = rt.graph(ctx.run_id, ctx.generation)
    join = graph.successors(ctx.step_id)[0]
    key = rt.state.key(ctx.run_id, f"race:{join}")
    if not rt.redis.set(key, ctx.step_id, nx=True, ex=RACE_KEY_TTL_S):
        raw = rt.redis.get(key)
        winner = raw.decode() if isinstance(raw, bytes) else raw
        if winner != ctx.step_id:  # another member won (not a redelivery of the winner)
            return {"lost": _engine_of(graph.steps[winner].options.get("queue")) if winner else None}
    siblings = [s for s in graph.steps[join].deps if s != ctx.step_id]
    _finish_siblings(rt, ctx.run_id, ctx.generation, siblings, mine)
    return {"won": True, "engine": mine, "result": value}


def _finish_siblings(rt: Runtime, run_id: str, gen: int, siblings: list[str], winner: str | None) -> None:
    """Complete the losers with a marker (the join fires now), then revoke their tasks."""
    marker = {"revoked": True, "winner": winner}
    for sid in siblings:
        complete(rt, run_id, sid, gen, marker, json.dumps(marker), None)
    ids = [task_id_for(run_id, sid, gen) for sid in siblings]
    if ids:
        rt.app.control.revoke(ids, terminate=True, signal="SIGTERM")
        log.info("parallel_capability: first success wins, the others revoked", winner=winner, revoked=ids)


def _engine_of(queue: str | None) -> str | None:
    found = engines_in([queue]) if queue else []
    return found[0] if found else None
