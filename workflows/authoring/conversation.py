"""Reusable steps that let runs talk to each other: ``send_signal`` and ``wait_for_response``.

* ``wait_for_response("pong", timeout=30)`` -- a step that completes with the payload of
  signal ``pong`` sent to its run; with ``timeout`` it fails (error ``DeadlineExceeded``)
  when none arrived in time, so the run rolls back like after any failure.
* ``send_signal(run_id, "ping", payload)`` -- a step that sends signal ``ping`` to run
  ``run_id``. Chained, the previous step's result is the payload when none is given, or the
  target run id when ``run_id`` is None. A signal is stored once per (run, name): sent twice
  (a redelivered step, two senders) it is applied once, with the first payload.

Both are ordinary Celery signatures, so a canvas using them still reads as Celery. The task
behind ``send_signal`` (``canvasflow.send_signal``) is in :mod:`canvasflow.workflows.tasks`:
it delivers the signal through the run operations, which stand above what users write.
"""

from __future__ import annotations

from typing import Any

from celery.canvas import Signature

from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import InputError
from canvasflow.workflows.runtime.wire import SEND_SIGNAL_TASK, SIGNAL_TASK

UNSET = "__canvasflow_unset__"  # no payload given: the previous step's result is the payload


def wait_for_response(name: str, timeout: float | None = None, **options: Any) -> Signature:
    """A step completing with the payload of signal ``name``; failing after ``timeout`` seconds."""
    kwargs: dict[str, Any] = {"name": name}
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InputError(f"wait_for_response({name!r}): timeout must be a positive number of seconds")
        kwargs["timeout"] = float(timeout)
    return current_app().signature(SIGNAL_TASK, kwargs=kwargs, immutable=True, **options)


def send_signal(run_id: str | None, name: str, payload: Any = UNSET, **options: Any) -> Signature:
    """A step sending signal ``name`` with ``payload`` to run ``run_id`` (see the module doc)."""
    if run_id is None and payload == UNSET:
        raise InputError(f"send_signal({name!r}): give the run id, the payload, or both")
    kwargs: dict[str, Any] = {"name": name, "run_id": run_id}
    if payload != UNSET:
        kwargs["payload"] = payload
    return current_app().signature(SEND_SIGNAL_TASK, kwargs=kwargs, **options)
