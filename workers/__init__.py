"""Steps, the capability registry and worker-side signal handlers."""

from canvasflow.workers import signals as _signals  # noqa: F401  (connects log-context handlers)
from canvasflow.workers.capabilities import registry
from canvasflow.workers.step import StepTask, step
from canvasflow.workflows.runtime import parallel as _parallel  # noqa: F401  (the aggregate step)

__all__ = ["StepTask", "registry", "step"]
