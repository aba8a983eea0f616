"""Saga compensation: ``@compensates(step)`` registers the undo of a step; failed runs roll back."""

from canvasflow.compensation.decorator import CompensationTask, compensates
from canvasflow.compensation.registry import registry

__all__ = ["CompensationTask", "compensates", "registry"]
