"""Actions: name what a workflow needs, not where it runs.

``@action("ocr")`` registers a handler of the action named after the function (or ``name=``)
for capability ``ocr``; the engines' workers import it. In a workflow:

* ``execute_action("ocr", "extract", payload)`` is one step that the router sends to
  whichever engine serves ``ocr`` (as any step of that capability);
* ``parallel_capability("ocr", "extract", payload, aggregate="all")`` runs the action on
  every engine of ``ocr`` with a live worker when the run starts, then aggregates: ``"all"``
  (``{engine: result}``), ``"majority"`` (the most common result, ties to the higher
  priority), or a step signature given the ``{engine: result}`` dict.

Each capability has one action task, ``canvasflow.action.<capability>``, whose body calls
the handler by name; aggregation runs on the capability's shared queue.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from celery import chord
from celery.canvas import Signature

from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import DefinitionError, RoutingError
from canvasflow.config.queues import queue_for
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workers.engines import registry as engines

ACTION_TASK = "canvasflow.action.{}"
AGGREGATE_TASK = "canvasflow.aggregate"
AGGREGATES = ("all", "majority")

_handlers: dict[tuple[str, str], Callable[[Any], Any]] = {}


def action_task(capability: str) -> Any:
    """The capability's action task (registered on first use, in clients and workers alike)."""
    name = ACTION_TASK.format(capability)
    app = current_app()
    if name not in app.tasks:
        from canvasflow.workers.step import StepTask

        def run_action(action: str, payload: Any) -> Any:
            handler = _handlers.get((capability, action))
            if handler is None:
                known = sorted(a for c, a in _handlers if c == capability)
                raise RoutingError(
                    f"no handler of action {action!r} for capability {capability!r} on this worker "
                    f"(it has {known}): import the module declaring @action({capability!r})"
                )
            return handler(payload)

        app.task(run_action, name=name, base=StepTask, capability=capability, route=None, requires={})
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


def parallel_capability(
    capability: str, action: str, payload: Any = None, aggregate: str | Signature = "all"
) -> Signature:
    """The action on every live engine of the capability, then the aggregate of their results."""
    from canvasflow.workers.routing.router import live_engines
    from canvasflow.workflows.runtime.context import runtime  # late: the runtime is the upper layer

    if isinstance(aggregate, str) and aggregate not in AGGREGATES:
        raise DefinitionError(f"aggregate must be one of {AGGREGATES} or a step signature, not {aggregate!r}")
    rt = runtime()
    live = live_engines(rt.redis, rt.settings, capability)
    if not live:
        declared = [e.name for e in engines.of(capability)]
        raise RoutingError(
            f"parallel_capability: no engine of {capability!r} has a live worker (declared: {declared})"
        )
    task = action_task(capability)
    members = [task.si(action, payload).set(queue=e.queue) for e in live]
    keys = [e.key for e in live]
    if isinstance(aggregate, Signature):
        body = current_app().signature(AGGREGATE_TASK, kwargs={"engines": keys, "how": "all"})
        return chord(members, body.set(queue=queue_for(capability))) | aggregate
    body = current_app().signature(AGGREGATE_TASK, kwargs={"engines": keys, "how": aggregate})
    return chord(members, body.set(queue=queue_for(capability)))


def combine(results: list[Any], engines: list[str], how: str) -> Any:
    """``all``: ``{engine: result}``; ``majority``: the most common result (ties: the first engine's)."""
    by_engine = dict(zip(engines, results, strict=True))
    if how == "all":
        return by_engine
    counts = Counter(json.dumps(r, sort_keys=True) for r in results)
    top = max(counts.values())
    return next(r for r in results if counts[json.dumps(r, sort_keys=True)] == top)


def _register_aggregate() -> None:
    from canvasflow.workers.step import step

    @step(name=AGGREGATE_TASK, capability="default")
    def aggregate(results: list[Any], engines: list[str], how: str) -> Any:
        return combine(results, engines, how)


_register_aggregate()
