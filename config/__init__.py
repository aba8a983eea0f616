"""Settings, the Celery app, logging and queue declarations."""

from canvasflow.config.errors import CanvasflowError
from canvasflow.config.settings import Settings, get_settings

__all__ = ["CanvasflowError", "Settings", "get_settings"]
