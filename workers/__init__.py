"""Steps and the fleet: ``@step``, the capability registry, engines, routing, limits, workers.

A face: the names below are imported on first use, and importing it registers nothing (the
worker-side signal handlers and the runtime's tasks are imported by ``canvasflow.app``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
    from canvasflow.workers.capabilities import registry
    from canvasflow.workers.step import StepTask, step

_EXPORTS = {
    "StepTask": "canvasflow.workers.step",
    "registry": "canvasflow.workers.capabilities",
    "step": "canvasflow.workers.step",
}
# ``step`` is the decorator, also when its module canvasflow.workers.step has been imported
__getattr__, __dir__ = lazy(__name__, _EXPORTS, keep=("step",))

__all__ = ["StepTask", "registry", "step"]
