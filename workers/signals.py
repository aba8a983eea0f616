"""Celery signal handlers for log context: every line logged inside a task carries its id and name."""

from __future__ import annotations

from typing import Any

import structlog
from celery.signals import task_postrun, task_prerun


@task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def _unbind_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
