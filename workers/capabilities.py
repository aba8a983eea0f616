"""The capability registry: which capability each step task needs, and which queue serves it.

Filled at import time by ``@step``; read by the compiler (to route each step) and by
``canvasflow queues`` / ``canvasflow worker --capability``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canvasflow.config.queues import queue_for


@dataclass
class CapabilityRegistry:
    """Task name -> capability, and capability -> queue."""

    _by_task: dict[str, str] = field(default_factory=dict)

    def register(self, task_name: str, capability: str) -> None:
        self._by_task[task_name] = capability

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
