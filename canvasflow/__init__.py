"""canvasflow: workflows on Celery, journaled, compensated and resumable.

The public API::

    from canvasflow import step, compensates, Workflow, start, get_run, resume, cancel, signal, context
    from canvasflow import init_app   # run canvasflow on your own Celery app

The repository keeps its parts in top-level folders (``config/``, ``workers/``,
``workflows/``, ``compensation/``); installed, they are the subpackages
``canvasflow.config``, ``canvasflow.workers``, ``canvasflow.workflows`` and
``canvasflow.compensation`` (this folder links them in), so nothing generic lands at the
top of site-packages. Workers run ``celery -A canvasflow.app worker``, or ``celery -A
yourproject worker`` after ``init_app(your_celery_app)``.
"""

from canvasflow.compensation import compensates
from canvasflow.config.celery_app import current_app, init_app
from canvasflow.config.errors import (
    BrokerUnavailable,
    CanvasflowError,
    CompensationError,
    DefinitionError,
    InputError,
    ResumeRefused,
    RoutingError,
    RunNotFound,
    RunStateError,
    SettingsError,
    WorkflowNotFound,
)
from canvasflow.workers import step
from canvasflow.workflows import (
    Run,
    Workflow,
    blobs,
    cancel,
    compensate,
    get_run,
    input,
    list_runs,
    map_reduce,
    pipeline,
    result,
    resume,
    scatter_gather,
    signal,
    start,
    undo,
    value,
    wait_signal,
)
from canvasflow.workflows.runtime.execution import ExecutionContext, NoContext, context

__all__ = [
    "BrokerUnavailable",
    "CanvasflowError",
    "CompensationError",
    "DefinitionError",
    "ExecutionContext",
    "InputError",
    "NoContext",
    "ResumeRefused",
    "RoutingError",
    "Run",
    "RunNotFound",
    "RunStateError",
    "SettingsError",
    "Workflow",
    "WorkflowNotFound",
    "blobs",
    "cancel",
    "compensate",
    "compensates",
    "context",
    "current_app",
    "get_run",
    "init_app",
    "input",
    "list_runs",
    "map_reduce",
    "pipeline",
    "result",
    "resume",
    "scatter_gather",
    "signal",
    "start",
    "step",
    "undo",
    "value",
    "wait_signal",
]
