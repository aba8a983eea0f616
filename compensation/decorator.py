"""``@compensates(step)``: register the task that undoes a step.

The compensation is a real Celery task with its own retries and backoff. It receives the
step's journaled result, then the step's original arguments:

    @compensates(charge)
    def refund(charge_result, order):
        ...

It runs on the compensated step's capability queue unless given ``queue=``, at least
once per step: a delivery interrupted by a crash runs again (see compensation.delivery).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from celery import Task

from canvasflow.compensation.delivery import run_compensation
from canvasflow.compensation.header import COMP_HEADER
from canvasflow.compensation.registry import registry
from canvasflow.config.celery_app import current_app
from canvasflow.workers.step import TypedTask, autoretry

P = ParamSpec("P")
R = TypeVar("R")



class CompensationTask(Task):
    """Base class of compensation tasks: journaled, at least once per step, when run by canvasflow."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ref = self.request.get(COMP_HEADER) if self.request else None
        if not ref:
            return self.run(*args, **kwargs)
        return run_compensation(self, ref, args, kwargs)


def compensates(
    step: TypedTask[Any, Any] | Task | str,
    *,
    name: str | None = None,
    retries: int = 3,
    retry_backoff: bool | int = True,
    retry_backoff_max: int = 300,
    queue: str | None = None,
    at_most_once: bool = False,
    **options: Any,
) -> Callable[[Callable[P, R]], TypedTask[P, R]]:
    """Register the decorated function as the compensation of ``step`` (a step task or its name).

    A compensation runs at least once: one interrupted by a crash runs again, with the same
    ``context().idempotency_key`` (``<run>:<step>:undo``), so the author can make its effect
    happen once. ``at_most_once=True`` is for compensations that must never repeat: an
    interrupted one is recorded as ``compensation_failed`` (type ``Interrupted``) instead,
    for an operator to check and retry with ``canvasflow compensate RUN``."""
    step_name = step if isinstance(step, str) else step.name

    def decorate(fn: Callable[P, R]) -> TypedTask[P, R]:
        task_name = name or f"{fn.__module__}.{fn.__name__}"
        task = current_app().task(
            fn,
            name=task_name,
            base=CompensationTask,
            compensates=step_name,
            explicit_queue=queue,
            at_most_once=at_most_once,
            **autoretry(retries, (Exception,), retry_backoff, retry_backoff_max),
            **options,
        )
        registry.register(step_name, task_name)
        return cast("TypedTask[P, R]", task)

    return decorate
