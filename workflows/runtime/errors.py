"""What the journal, the history and the middleware record of an exception."""

from __future__ import annotations

from traceback import format_exception
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.utils.serialization import UnpickleableExceptionWrapper

TRACEBACK_LIMIT = 8000  # characters of a traceback kept (its end: where it was raised)


def error_info(exc: BaseException, task: Task | None = None) -> dict[str, Any]:
    """The journal's view of an error: its own type and message, also when Celery could not
    pickle it and handed over an ``UnpickleableExceptionWrapper`` instead."""
    retryable = bool(task is not None and isinstance(exc, tuple(getattr(task, "autoretry_for", ()))))
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):  # a step's start_to_close
        message = f"start_to_close: the step ran longer than its limit ({type(exc).__name__})"
        return {"type": "DeadlineExceeded", "message": message, "retryable": retryable}
    if isinstance(exc, UnpickleableExceptionWrapper):
        args = [str(a) for a in exc.exc_args or ()]
        message = args[0] if len(args) == 1 else ", ".join(args) or (exc.text or "")
        return {
            "type": exc.exc_cls_name,
            "module": exc.exc_module,
            "message": message,
            "retryable": retryable,
        }
    kind = type(exc)
    return {"type": kind.__name__, "module": kind.__module__, "message": str(exc), "retryable": retryable}


def traceback_text(exc: BaseException, limit: int = TRACEBACK_LIMIT) -> str:
    """The formatted traceback of ``exc`` (its last ``limit`` characters)."""
    return "".join(format_exception(exc))[-limit:]
