"""Routing strategies by name: plain functions ``(candidates, needs) -> Choice | None``.

Each built-in one is a module of its own; register another with :func:`register_strategy`.
Candidates are the capability's live engines that satisfy the step's ``requires``, highest
priority first, never empty. A face: the names below are imported on first use (from
:mod:`.registry`, which registers the built-in ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
    from canvasflow.workers.routing.strategies.registry import Strategy, names, register_strategy, strategy

_REGISTRY = "canvasflow.workers.routing.strategies.registry"
_EXPORTS = {"Strategy": _REGISTRY, "names": _REGISTRY, "register_strategy": _REGISTRY, "strategy": _REGISTRY}
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

__all__ = ["Strategy", "names", "register_strategy", "strategy"]
