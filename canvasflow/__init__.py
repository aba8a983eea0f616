"""canvasflow: workflows on Celery, journaled, compensated and resumable.

The public API::

    from canvasflow import step, compensates, Workflow, start, get_run, resume, cancel, signal, context
    from canvasflow import init_app   # run canvasflow on your own Celery app

The repository keeps its parts in top-level folders (``config/``, ``workers/``,
``workflows/``, ``compensation/``); installed, they are the subpackages
``canvasflow.config``, ``canvasflow.workers``, ``canvasflow.workflows`` and
``canvasflow.compensation`` (mapped in pyproject.toml, ``[tool.setuptools.package-dir]``),
so nothing generic lands at the top of site-packages. Workers run
``celery -A canvasflow.app worker``, or ``celery -A yourproject worker`` after
``init_app(your_celery_app)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
    from canvasflow.app import init_app
    from canvasflow.compensation import compensates
    from canvasflow.config.celery_app import current_app
    from canvasflow.config.errors import (
        BrokerUnavailable,
        CanvasflowError,
        CompensationError,
        DeadlineExceeded,
        DefinitionError,
        EngineError,
        InputError,
        ResumeRefused,
        RoutingError,
        RunNotFound,
        RunStateError,
        SettingsError,
        StateUnavailable,
        UpgradeRefused,
        WorkflowNotFound,
    )
    from canvasflow.workers.actions import action, execute_action
    from canvasflow.workers.engines import Engine, register_engine
    from canvasflow.workers.limits import Limit
    from canvasflow.workers.routing.strategies import register_strategy
    from canvasflow.workers.step import step
    from canvasflow.workflows import (
        Run,
        Workflow,
        cancel,
        compensate,
        get_run,
        history,
        input,
        list_runs,
        map_reduce,
        pipeline,
        result,
        resume,
        scatter_gather,
        send_signal,
        signal,
        sleep,
        sleep_until,
        start,
        start_many,
        undo,
        value,
        wait_for_response,
        wait_signal,
    )
    from canvasflow.workflows.authoring import blobs
    from canvasflow.workflows.authoring.once import once
    from canvasflow.workflows.runtime.execution import ExecutionContext, NoContext, context
    from canvasflow.workflows.runtime.parallel import parallel_capability

# Names are imported on first use (config/faces.py), so that ``import canvasflow.config.settings``
# (or a tool that only needs the settings) does not build the Celery app and register every task.
_EXPORTS = {
    "BrokerUnavailable": "canvasflow.config.errors",
    "CanvasflowError": "canvasflow.config.errors",
    "CompensationError": "canvasflow.config.errors",
    "DeadlineExceeded": "canvasflow.config.errors",
    "DefinitionError": "canvasflow.config.errors",
    "Engine": "canvasflow.workers.engines",
    "EngineError": "canvasflow.config.errors",
    "ExecutionContext": "canvasflow.workflows.runtime.execution",
    "InputError": "canvasflow.config.errors",
    "Limit": "canvasflow.workers.limits",
    "NoContext": "canvasflow.workflows.runtime.execution",
    "ResumeRefused": "canvasflow.config.errors",
    "RoutingError": "canvasflow.config.errors",
    "Run": "canvasflow.workflows",
    "RunNotFound": "canvasflow.config.errors",
    "RunStateError": "canvasflow.config.errors",
    "SettingsError": "canvasflow.config.errors",
    "StateUnavailable": "canvasflow.config.errors",
    "UpgradeRefused": "canvasflow.config.errors",
    "Workflow": "canvasflow.workflows",
    "WorkflowNotFound": "canvasflow.config.errors",
    "action": "canvasflow.workers.actions",
    "blobs": "canvasflow.workflows.authoring",
    "cancel": "canvasflow.workflows",
    "check_versions": "canvasflow.workflows",
    "compensate": "canvasflow.workflows",
    "compensates": "canvasflow.compensation",
    "context": "canvasflow.workflows.runtime.execution",
    "current_app": "canvasflow.config.celery_app",
    "execute_action": "canvasflow.workers.actions",
    "get_run": "canvasflow.workflows",
    "history": "canvasflow.workflows",
    "init_app": "canvasflow.app",
    "input": "canvasflow.workflows",
    "list_runs": "canvasflow.workflows",
    "map_reduce": "canvasflow.workflows",
    "migrate": "canvasflow.workflows",
    "once": "canvasflow.workflows.authoring.once",
    "parallel_capability": "canvasflow.workflows.runtime.parallel",
    "pipeline": "canvasflow.workflows",
    "register_engine": "canvasflow.workers.engines",
    "register_strategy": "canvasflow.workers.routing.strategies",
    "result": "canvasflow.workflows",
    "resume": "canvasflow.workflows",
    "scatter_gather": "canvasflow.workflows",
    "send_signal": "canvasflow.workflows",
    "signal": "canvasflow.workflows",
    "sleep": "canvasflow.workflows",
    "sleep_until": "canvasflow.workflows",
    "start": "canvasflow.workflows",
    "start_many": "canvasflow.workflows",
    "step": "canvasflow.workers.step",
    "undo": "canvasflow.workflows",
    "value": "canvasflow.workflows",
    "wait_for_response": "canvasflow.workflows",
    "wait_signal": "canvasflow.workflows",
}
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

__all__ = [
    "BrokerUnavailable",
    "CanvasflowError",
    "CompensationError",
    "DeadlineExceeded",
    "DefinitionError",
    "Engine",
    "EngineError",
    "ExecutionContext",
    "InputError",
    "Limit",
    "NoContext",
    "ResumeRefused",
    "RoutingError",
    "Run",
    "RunNotFound",
    "RunStateError",
    "SettingsError",
    "StateUnavailable",
    "UpgradeRefused",
    "Workflow",
    "WorkflowNotFound",
    "action",
    "blobs",
    "cancel",
    "check_versions",
    "compensate",
    "compensates",
    "context",
    "current_app",
    "execute_action",
    "get_run",
    "history",
    "init_app",
    "input",
    "list_runs",
    "map_reduce",
    "migrate",
    "once",
    "parallel_capability",
    "pipeline",
    "register_engine",
    "register_strategy",
    "result",
    "resume",
    "scatter_gather",
    "send_signal",
    "signal",
    "sleep",
    "sleep_until",
    "start",
    "start_many",
    "step",
    "undo",
    "value",
    "wait_for_response",
    "wait_signal",
]
