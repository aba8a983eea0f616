"""Steps, the capability registry and worker-side signal handlers."""

from workers import signals as _signals  # noqa: F401  (connects log-context handlers)
from workers.capabilities import registry
from workers.step import StepTask, step

__all__ = ["StepTask", "registry", "step"]
