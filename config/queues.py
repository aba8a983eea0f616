"""Queue names: one queue per capability (and one per engine of it), plus the default and control
queues, and the task route to a capability's queue.

Their kombu declarations are the Celery app's (config/celery_app.py), so that what only names
queues (the registries, the journal, ``canvasflow status``) loads no kombu."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

CAPABILITY_PREFIX = "cap."
# an engine's queue (workers/engines.py): cap.<capability>.<engine>
ENGINE_QUEUE = re.compile(re.escape(CAPABILITY_PREFIX) + r"([a-z0-9][a-z0-9_-]*)\.([a-z0-9][a-z0-9_-]*)$")


def queue_for(capability: str) -> str:
    """The queue a capability's worker fleet consumes: ``cap.<capability>``."""
    return f"{CAPABILITY_PREFIX}{capability}"


def engines_in(queues: list[str]) -> list[str]:
    """``capability/engine`` for each engine queue (``cap.<capability>.<engine>``) among ``queues``."""
    return [engine for q in queues if (engine := engine_of_queue(q))]


def engine_of_queue(queue: str | None) -> str | None:
    """``capability/engine`` when ``queue`` is an engine's queue, else None."""
    found = ENGINE_QUEUE.match(queue) if queue else None
    return f"{found.group(1)}/{found.group(2)}" if found else None


def capability_route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any) -> Any:
    """A task route: a step's plain ``.delay()`` goes to ``cap.<capability>``.

    canvasflow's runtime names the queue of each step it publishes itself (the router's choice)."""
    capability = getattr(task, "capability", None)
    if isinstance(capability, str) and hasattr(task, "on_failure_policy"):
        return {"queue": queue_for(capability)}
    return None


# -- a queue's lists on a Redis broker --------------------------------------------------------
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's default lanes, stated: messages.py reads each list
REDIS_PRIORITY_SEP = "\x06\x16"  # kombu's Redis Channel.sep: lane p of queue q is the list q + sep + p


def redis_lists(queue: str, steps: Sequence[int] = REDIS_PRIORITY_STEPS) -> list[str]:
    """The Redis lists holding ``queue``'s messages: the queue itself (lane 0) and one per other
    priority lane (kombu's Redis transport; ``steps``: its ``priority_steps``, canvasflow's by default)."""
    return [queue, *(f"{queue}{REDIS_PRIORITY_SEP}{p}" for p in steps if p)]
