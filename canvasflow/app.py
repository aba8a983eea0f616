"""The Celery app, for ``celery -A canvasflow.app worker`` (and ``flower``, ``inspect``).

(Provisional in this branch: the composition root proper comes with the telemetry work.)
"""

import canvasflow.compensation.subscriber  # the rollback listens to the runtime
import canvasflow.compensation.tasks
import canvasflow.workers.signals
import canvasflow.workflows.authoring.conversation  # canvasflow.send_signal
import canvasflow.workflows.runs.schedule_beat
import canvasflow.workflows.runtime.deadlines
import canvasflow.workflows.tasks  # noqa: F401
from canvasflow.config.celery_app import app

__all__ = ["app"]
