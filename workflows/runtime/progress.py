"""Progress a running step reports: ``context().progress(done, total=None, note=None)``.

Kept in the run's Redis state (hash ``<prefix>:{<run>}:progress``, one field per step or map
chunk, expiring with the rest of the run's state), so ``get_run(id).steps[i].progress`` and
``canvasflow status --json`` show it while the step runs and after it finished:
``{"done": 3, "total": 10, "note": "pages", "at": <unix time>}``. A map step's progress is
derived from its state: chunks done of the chunks it fanned out to.

Each report also emits ``on_step_progress`` to the middleware. Celery's ``update_state`` is
not called: canvasflow publishes steps with ``ignore_result`` (results travel through the
run's state, not the result backend), so a ``PROGRESS`` state written there would never be
replaced by the step's end and would outlive it; the run's state is where progress is read
(``RunState.progress``, without loading this module's telemetry).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from canvasflow.config.errors import InputError
from canvasflow.workflows.runtime import events
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.state import PROGRESS

NOTE_LIMIT = 500


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputError(f"progress: {name} must be a finite number >= 0, got {value!r}")
    return value


def progress_value(done: float, total: float | None = None, note: str | None = None) -> dict[str, Any]:
    """A report as it is kept: ``{"done", "total", "note", "at"}``; InputError for what is not a number."""
    done = _number("done", done)
    if total is not None:
        total = _number("total", total)
    if note is not None and not isinstance(note, str):
        raise InputError(f"progress: note must be a string, got {type(note).__name__}")
    return {"done": done, "total": total, "note": note[:NOTE_LIMIT] if note else None, "at": time.time()}


def report(
    rt: Runtime,
    run_id: str,
    step_id: str,
    generation: int,
    done: float,
    total: float | None = None,
    note: str | None = None,
    *,
    task: str | None = None,
    attempt: int = 1,
    queue: str | None = None,
    worker: str | None = None,
    compensation: bool = False,
) -> None:
    """Store a step's progress in its run's state and tell the middleware (a compensation's
    progress goes to the middleware only)."""
    value = progress_value(done, total, note)
    done, total = value["done"], value["total"]
    if not compensation:
        rt.redis.hset(rt.state.key(run_id, PROGRESS), step_id, json.dumps(value))
    if events.listening("on_step_progress"):
        info = {"queue": queue, "worker": worker}
        delivery = events.Delivery(run_id, step_id, task, generation, attempt, info)
        events.step_progress(delivery.event(), done, total, note)

