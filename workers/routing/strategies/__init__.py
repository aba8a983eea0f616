"""Routing strategies by name: plain functions ``(candidates, needs) -> Choice | None``.

Each built-in one is a module of its own; register another with :func:`register_strategy`.
Candidates are the capability's live engines that satisfy the step's ``requires``, highest
priority first, never empty.
"""

from canvasflow.workers.routing.strategies.registry import Strategy, names, register_strategy, strategy

__all__ = ["Strategy", "names", "register_strategy", "strategy"]
