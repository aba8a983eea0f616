"""The Celery app, for ``celery -A canvasflow.app worker`` (and ``flower``, ``inspect``)."""

# the runtime's tasks (workers import the rest, see worker_imports)
import canvasflow.compensation
import canvasflow.workers
import canvasflow.workflows  # noqa: F401
from canvasflow.config.celery_app import app

__all__ = ["app"]
