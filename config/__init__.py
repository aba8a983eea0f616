"""Settings, the Celery app, logging and queue declarations.

A face: the names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
    from canvasflow.config.errors import CanvasflowError
    from canvasflow.config.settings import Settings, get_settings

_EXPORTS = {
    "CanvasflowError": "canvasflow.config.errors",
    "Settings": "canvasflow.config.settings",
    "get_settings": "canvasflow.config.settings",
}
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

__all__ = ["CanvasflowError", "Settings", "get_settings"]
