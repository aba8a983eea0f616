"""Settings, the Celery app, logging and queue declarations."""

from config.errors import CanvasflowError
from config.settings import Settings, get_settings

__all__ = ["CanvasflowError", "Settings", "get_settings"]
