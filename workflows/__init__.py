"""Authoring and running workflows: the public API.

from canvasflow.workflows import Workflow, start, get_run, resume, cancel, signal
"""

from canvasflow.compensation import subscriber as _rollback  # noqa: F401  (the rollback listens to the runtime)
from canvasflow.workflows import tasks as _tasks  # noqa: F401  (registers the runtime's Celery tasks)
from canvasflow.workflows.authoring.conversation import send_signal, wait_for_response
from canvasflow.workflows.authoring.dag import input, result, value
from canvasflow.workflows.authoring.definition import Workflow, registry
from canvasflow.workflows.authoring.patterns import (
    map_reduce,
    mapper_step,
    pipeline,
    scatter_gather,
    wait_signal,
)
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
from canvasflow.workflows.runs import schedule_beat as _schedule_beat  # noqa: F401  (canvasflow.start_scheduled)
from canvasflow.workflows.runs.history import HistoryEvent, history
from canvasflow.workflows.runtime import deadlines as _deadlines  # noqa: F401  (canvasflow.deadline)

__all__ = [
    "HistoryEvent",
    "Run",
    "Workflow",
    "cancel",
    "compensate",
    "get_run",
    "history",
    "input",
    "list_runs",
    "map_reduce",
    "mapper_step",
    "pipeline",
    "registry",
    "result",
    "resume",
    "scatter_gather",
    "send_signal",
    "signal",
    "start",
    "undo",
    "value",
    "wait_for_response",
    "wait_signal",
]
