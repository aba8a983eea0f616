"""The Celery app, for ``celery -A canvasflow.app worker`` (and ``flower``, ``inspect``)."""

import canvasflow  # noqa: F401  (registers the runtime's tasks; workers import the rest, see worker_imports)
from canvasflow.config.celery_app import app

__all__ = ["app"]
