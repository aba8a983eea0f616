"""Workflow patterns as plain functions returning Celery canvas (they run under plain Celery too).

* ``pipeline(a, b, c)``                 each step gets the previous result
* ``scatter_gather([a, b], gather)``    run in parallel, gather receives the list of results
* ``map_reduce(mapper, reducer, items_from=step, chunk_size=100)``
      ``items_from`` produces a list at run time; the mapper is applied to each item in
      chunks of ``chunk_size`` items per message; the reducer receives every mapped value,
      in item order.
* ``wait_signal("approved")``           a step that completes when the run receives that signal
"""

from __future__ import annotations

from typing import Any

from celery import chain, chord
from celery.canvas import Signature

from canvasflow.config.celery_app import current_app
from canvasflow.workflows.runtime.wire import MAP_TASK, SIGNAL_TASK


def pipeline(*steps: Signature) -> Signature:
    if not steps:
        raise ValueError("pipeline needs at least one step")
    return chain(*steps) if len(steps) > 1 else steps[0]


def scatter_gather(steps: list[Signature], gather: Signature) -> Signature:
    return chord(list(steps), gather)


def mapper_step(mapper: Signature, chunk_size: int = 100) -> Signature:
    """The map part alone: receives a list, returns the mapped list (in order)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return current_app().signature(MAP_TASK, kwargs={"mapper": dict(mapper), "chunk_size": int(chunk_size)})


def map_reduce(
    mapper: Signature, reducer: Signature, *, items_from: Signature, chunk_size: int = 100
) -> Signature:
    return chain(items_from, mapper_step(mapper, chunk_size), reducer)


def wait_signal(name: str, **options: Any) -> Signature:
    return current_app().signature(SIGNAL_TASK, kwargs={"name": name}, immutable=True, **options)
