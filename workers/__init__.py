"""The fleet: steps and their task class, the capability and engine registries, routing, limits,
heartbeats, worker start-up. A face only: names are handed on lazily (``@step`` itself is
``canvasflow.step``, or ``canvasflow.workers.step.step``), and importing it registers nothing."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from canvasflow.workers.capabilities import registry
    from canvasflow.workers.step import StepTask

_EXPORTS = {"StepTask": "canvasflow.workers.step", "registry": "canvasflow.workers.capabilities"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'canvasflow.workers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["StepTask", "registry"]
