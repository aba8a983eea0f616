"""Celery tasks of the compensation runtime (shared: on canvasflow's app and any app ``init_app`` adopted)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from canvasflow.compensation.decorator import CompensationTask
from canvasflow.compensation.rollback import CHUNK_COMP_TASK
from canvasflow.config.celery_app import current_app


@shared_task(name=CHUNK_COMP_TASK, base=CompensationTask)
def compensate_chunk(compensation: str, mapper: dict[str, Any], items: list[Any], results: list[Any]) -> int:
    """Undo one map chunk: the mapper's compensation for each item, newest first."""
    celery = current_app()
    comp = celery.tasks[compensation]
    sig = celery.signature(mapper)
    for item, value in reversed(list(zip(items[: len(results)], results, strict=True))):
        comp.run(value, item, *sig.args, **sig.kwargs)
    return len(items)
