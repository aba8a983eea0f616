"""Authoring and running workflows: the public API (names handed on lazily; nothing registered).

from canvasflow.workflows import Workflow, start, get_run, resume, cancel, signal
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    from canvasflow.workflows.runs.history import HistoryEvent, history

_CLIENT = "canvasflow.workflows.client"
_EXPORTS = {
    "HistoryEvent": "canvasflow.workflows.runs.history",
    "Run": _CLIENT,
    "Workflow": _CLIENT,  # from the client, which makes Workflow.start launch runs
    "cancel": _CLIENT,
    "compensate": _CLIENT,
    "get_run": _CLIENT,
    "history": "canvasflow.workflows.runs.history",
    "input": "canvasflow.workflows.authoring.dag",
    "list_runs": _CLIENT,
    "map_reduce": "canvasflow.workflows.authoring.patterns",
    "mapper_step": "canvasflow.workflows.authoring.patterns",
    "pipeline": "canvasflow.workflows.authoring.patterns",
    "registry": _CLIENT,
    "result": "canvasflow.workflows.authoring.dag",
    "resume": _CLIENT,
    "scatter_gather": "canvasflow.workflows.authoring.patterns",
    "send_signal": "canvasflow.workflows.authoring.conversation",
    "signal": _CLIENT,
    "start": _CLIENT,
    "undo": _CLIENT,
    "value": "canvasflow.workflows.authoring.dag",
    "wait_for_response": "canvasflow.workflows.authoring.conversation",
    "wait_signal": "canvasflow.workflows.authoring.patterns",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'canvasflow.workflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
