"""Authoring and running workflows: the public API.

from canvasflow.workflows import Workflow, start, get_run, resume, cancel, signal
"""

from canvasflow.workflows import tasks as _tasks  # noqa: F401  (registers the runtime's Celery tasks)
from canvasflow.workflows.client import (
    Run,
    cancel,
    compensate,
    get_run,
    list_runs,
    resume,
    signal,
    start,
    undo,
)
from canvasflow.workflows.dag import input, result, value
from canvasflow.workflows.definition import Workflow, registry
from canvasflow.workflows.patterns import map_reduce, mapper_step, pipeline, scatter_gather, wait_signal

__all__ = [
    "Run",
    "Workflow",
    "cancel",
    "compensate",
    "get_run",
    "input",
    "list_runs",
    "map_reduce",
    "mapper_step",
    "pipeline",
    "registry",
    "result",
    "resume",
    "scatter_gather",
    "signal",
    "start",
    "undo",
    "value",
    "wait_signal",
]
