"""Queue names and declarations: one queue per capability, plus the default and control queues."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kombu import Exchange, Queue

CAPABILITY_PREFIX = "cap."


def queue_for(capability: str) -> str:
    """The queue a capability's worker fleet consumes: ``cap.<capability>``."""
    return f"{CAPABILITY_PREFIX}{capability}"


def declare_queues(default_queue: str, control_queue: str, capabilities: Iterable[str]) -> list[Queue]:
    """Every queue canvasflow publishes to, declared explicitly (direct exchange per queue name)."""
    names = [default_queue, control_queue, *(queue_for(c) for c in capabilities)]
    unique = list(dict.fromkeys(names))
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in unique]


def capability_route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any) -> Any:
    """A task route: a step's plain ``.delay()`` goes to ``cap.<capability>``.

    canvasflow's runtime names the queue of each step it publishes itself (the router's choice)."""
    capability = getattr(task, "capability", None)
    if isinstance(capability, str) and hasattr(task, "on_failure_policy"):
        return {"queue": queue_for(capability)}
    return None
