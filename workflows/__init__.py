"""Authoring and running workflows: the public API.

from workflows import Workflow, start, get_run, resume, cancel, signal
"""

from workflows import tasks as _tasks  # noqa: F401  (registers the runtime's Celery tasks)
from workflows.client import (
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
from workflows.dag import input, result, value
from workflows.definition import Workflow, registry
from workflows.patterns import map_reduce, mapper_step, pipeline, scatter_gather, wait_signal

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
