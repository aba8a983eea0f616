"""Durable timers as canvas steps: ``sleep(seconds | timedelta)`` and ``sleep_until(datetime)``.

    chain(charge.s(order), canvasflow.sleep(timedelta(days=1)), settle.s())

A sleep step hands on what it receives (its first argument: the previous result in a chain, the
header's list in a chord body, ``result("x")`` given in the DAG form), unchanged, once it is due.
While it sleeps the run holds no worker slot and no message (runtime/timers.py): its due time is
journaled, and the timer service of the control workers wakes it. ``sleep_until`` with a time
already past completes at once. Under plain Celery (no canvasflow run) the task refuses to run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from celery.canvas import Signature

from canvasflow.config.celery_app import current_app
from canvasflow.workflows.runtime.timers import instant_of, seconds_of
from canvasflow.workflows.runtime.wire import SLEEP_TASK


def sleep(duration: float | timedelta, *args: Any, **options: Any) -> Signature:
    """A step that waits ``duration`` (seconds, or a timedelta) from when the run reaches it."""
    return current_app().signature(SLEEP_TASK, args=args, kwargs={"seconds": seconds_of(duration)}, **options)


def sleep_until(when: datetime, *args: Any, **options: Any) -> Signature:
    """A step that waits until ``when`` (a timezone-aware datetime)."""
    return current_app().signature(SLEEP_TASK, args=args, kwargs={"until": instant_of(when)}, **options)
