"""Authoring and running workflows: the public API.

    from canvasflow.workflows import Workflow, start, get_run, resume, cancel, signal

A face: the names below are imported on first use, and importing it registers nothing. The
client's names (``start``, ``get_run``, ...) bring the composition root, ``canvasflow.app``,
with them (the runtime's tasks, the rollback listener, the telemetry the settings switch on);
so do ``Workflow`` and ``registry``, handed on from the client, which makes ``Workflow.start``
launch runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
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
    from canvasflow.workflows.authoring.sleeps import sleep, sleep_until
    from canvasflow.workflows.client import (
        Run,
        cancel,
        check_versions,
        compensate,
        get_run,
        list_runs,
        migrate,
        resume,
        signal,
        start,
        start_many,
        undo,
    )
    from canvasflow.workflows.runs.history import HistoryEvent, history

_AUTHORING = "canvasflow.workflows.authoring"
_CLIENT = "canvasflow.workflows.client"
_EXPORTS = {
    "HistoryEvent": "canvasflow.workflows.runs.history",
    "Run": _CLIENT,
    "Workflow": _CLIENT,
    "cancel": _CLIENT,
    "check_versions": _CLIENT,
    "compensate": _CLIENT,
    "get_run": _CLIENT,
    "history": "canvasflow.workflows.runs.history",
    "input": f"{_AUTHORING}.dag",
    "list_runs": _CLIENT,
    "map_reduce": f"{_AUTHORING}.patterns",
    "migrate": _CLIENT,
    "mapper_step": f"{_AUTHORING}.patterns",
    "pipeline": f"{_AUTHORING}.patterns",
    "registry": _CLIENT,
    "result": f"{_AUTHORING}.dag",
    "resume": _CLIENT,
    "scatter_gather": f"{_AUTHORING}.patterns",
    "send_signal": f"{_AUTHORING}.conversation",
    "signal": _CLIENT,
    "sleep": f"{_AUTHORING}.sleeps",
    "sleep_until": f"{_AUTHORING}.sleeps",
    "start": _CLIENT,
    "start_many": _CLIENT,
    "undo": _CLIENT,
    "value": f"{_AUTHORING}.dag",
    "wait_for_response": f"{_AUTHORING}.conversation",
    "wait_signal": f"{_AUTHORING}.patterns",
}
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

__all__ = [
    "HistoryEvent",
    "Run",
    "Workflow",
    "cancel",
    "check_versions",
    "compensate",
    "get_run",
    "history",
    "input",
    "list_runs",
    "map_reduce",
    "mapper_step",
    "migrate",
    "pipeline",
    "registry",
    "result",
    "resume",
    "scatter_gather",
    "send_signal",
    "signal",
    "sleep",
    "sleep_until",
    "start",
    "start_many",
    "undo",
    "value",
    "wait_for_response",
    "wait_signal",
]
