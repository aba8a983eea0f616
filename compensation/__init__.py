"""Saga compensation: ``@compensates(step)`` registers the undo of a step; failed runs roll back.

A face: the names below are imported on first use; the rollback listener
(``subscriber.ROLLBACK``) is registered by the composition root, ``canvasflow.app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
    from canvasflow.compensation.decorator import CompensationTask, compensates
    from canvasflow.compensation.registry import registry

_EXPORTS = {
    "CompensationTask": "canvasflow.compensation.decorator",
    "compensates": "canvasflow.compensation.decorator",
    "registry": "canvasflow.compensation.registry",
}
# ``registry`` is the compensation registry, also when its module has been imported
__getattr__, __dir__ = lazy(__name__, _EXPORTS, keep=("registry",))

__all__ = ["CompensationTask", "compensates", "registry"]
