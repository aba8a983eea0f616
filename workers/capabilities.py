"""The capability registry: which capability each step task needs, and which queue serves it.

Filled at import time by ``@step``; read by the compiler (to route each step) and by
``canvasflow queues`` / ``canvasflow worker --capability``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from canvasflow.config.queues import queue_for
from canvasflow.workers.engines import registry as engines


@dataclass
class CapabilityRegistry:
    """Task name -> capability, and capability -> queue."""

    _by_task: dict[str, str] = field(default_factory=dict)
    _routing: dict[str, dict[str, Any]] = field(default_factory=dict)
    generation: int = 0  # counts registrations: what was compiled before may differ now

    def register(self, task_name: str, capability: str, **routing: Any) -> None:
        """``routing``: the step's ``strategy`` and ``requires`` (None when not given)."""
        self.generation += 1
        self._by_task[task_name] = capability
        given = {k: v for k, v in routing.items() if v}
        if given:
            self._routing[task_name] = given
        else:
            self._routing.pop(task_name, None)

    def routing_of(self, task_name: str) -> dict[str, Any] | None:
        """What the router needs of a step, when its capability has engines or it asks for routing."""
        cap = self._by_task.get(task_name)
        if cap is None:
            return None
        given = self._routing.get(task_name)
        if not given and not engines.has(cap):
            return None
        return {"capability": cap, **(given or {})}

    def capability_of(self, task_name: str) -> str | None:
        return self._by_task.get(task_name)

    def queue_of(self, task_name: str) -> str | None:
        cap = self._by_task.get(task_name)
        return None if cap is None else queue_for(cap)

    def capabilities(self) -> dict[str, list[str]]:
        """Capability -> the step task names that need it, sorted."""
        out: dict[str, list[str]] = {}
        for task, cap in sorted(self._by_task.items()):
            out.setdefault(cap, []).append(task)
        return out


registry = CapabilityRegistry()
