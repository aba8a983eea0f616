"""Actions: name what a workflow needs, not where it runs.

``@action("ocr")`` registers a handler of the action named after the function (or ``name=``)
for capability ``ocr``; the engines' workers import it. In a workflow:

* ``execute_action("ocr", "extract", payload)`` is one step that the router sends to
  whichever engine serves ``ocr`` (as any step of that capability);
* ``parallel_capability("ocr", "extract", payload, aggregate="all")`` (module ``parallel``)
  runs the action on every engine of ``ocr`` with a live worker and aggregates.

Each capability has one action task, ``canvasflow.action.<capability>``, whose body calls
the handler by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.canvas import Signature

from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import RoutingError
from canvasflow.workers.capabilities import registry as capabilities

ACTION_TASK = "canvasflow.action.{}"

_handlers: dict[tuple[str, str], Callable[[Any], Any]] = {}


def action_task(capability: str) -> Any:
    """The capability's action task (registered on first use, in clients and workers alike)."""
    name = ACTION_TASK.format(capability)
    app = current_app()
    if name not in app.tasks:
        from canvasflow.workers.step import StepTask

        def run_action(action: str, payload: Any, race: bool = False) -> Any:
            handler = _handlers.get((capability, action))
            if handler is None:
                known = sorted(a for c, a in _handlers if c == capability)
                raise RoutingError(
                    f"no handler of action {action!r} for capability {capability!r} on this worker "
                    f"(it has {known}): import the module declaring @action({capability!r})"
                )
            if race:  # a member of parallel_capability(..., aggregate="first")
                from canvasflow.workflows.runtime.parallel import race as run_race

                return run_race(lambda: handler(payload))
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
