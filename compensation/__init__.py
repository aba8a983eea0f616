"""Saga compensation: ``@compensates(step)`` registers the undo of a step; failed runs roll back."""

from compensation.decorator import CompensationTask, compensates
from compensation.registry import registry

__all__ = ["CompensationTask", "compensates", "registry"]
