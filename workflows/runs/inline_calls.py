"""How ``run_inline`` calls a task body: a step's or compensation's attempts (its Celery retry
options without their backoff, each attempt under its ``context()``), and an author's errback
in either of Celery's two styles."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from typing import Any

from celery import Task
from celery.app.task import Context
from celery.exceptions import Retry
from celery.utils.functional import arity_greater

from canvasflow.config.celery_app import app
from canvasflow.workflows.runtime.execution import ExecutionContext, executing


def call_with_retries(
    task: Task,
    args: list[Any],
    kwargs: dict[str, Any],
    context: Callable[[int], ExecutionContext] | None = None,
    limited: Callable[[Callable[[], Any]], Any] | None = None,
) -> tuple[Any, int]:
    """``task``'s body and the attempts it took: retried as its autoretry options say, no backoff;
    each attempt inside ``context(attempt)`` (what ``context()`` returns in the body) when given,
    and called through ``limited`` (which raises a time limit as a worker would) when given."""
    retry_on = tuple(getattr(task, "autoretry_for", ()) or ())
    retries = int(task.max_retries or 0) if retry_on else 0
    attempt = 0
    while True:
        attempt += 1
        try:
            with executing(context(attempt)) if context else nullcontext():
                body = partial(task.run, *args, **kwargs)
                return (limited(body) if limited else body()), attempt
        except Retry as exc:
            if attempt > int(task.max_retries or 0):
                exc.canvasflow_attempts = attempt
                raise
        except Exception as exc:
            if not isinstance(exc, retry_on) or attempt > retries:
                exc.canvasflow_attempts = attempt  # type: ignore[attr-defined]
                raise


def call_errback(signature: dict[str, Any], task_id: str, task_name: str, exc: BaseException) -> None:
    """Call an errback in this process: ``(request, exc, traceback)`` when the task takes them,
    else the failed task's id (Celery's two styles)."""
    sig = app.signature(signature)
    task = app.tasks.get(sig.task)
    header = getattr(task, "__header__", None)
    if (
        task is not None
        and header is not None
        and not isinstance(header, partial)
        and arity_greater(header, 1)
    ):
        sig(Context(id=task_id, task=task_name), exc, exc.__traceback__)
    else:
        sig(task_id)
