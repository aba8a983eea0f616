"""The compensation registry: which task undoes which step."""

from __future__ import annotations

from dataclasses import dataclass, field

from canvasflow.config.errors import DefinitionError


@dataclass
class CompensationRegistry:
    """Step task name -> compensation task name."""

    _by_step: dict[str, str] = field(default_factory=dict)
    generation: int = 0  # counts registrations: what was compiled before may differ now

    def register(self, step_task: str, compensation_task: str) -> None:
        known = self._by_step.get(step_task)
        if known is not None and known != compensation_task:
            raise DefinitionError(
                f"step {step_task} already has compensation {known}; one step, one compensation"
            )
        self._by_step[step_task] = compensation_task
        self.generation += 1

    def compensation_of(self, step_task: str) -> str | None:
        return self._by_step.get(step_task)

    def items(self) -> list[tuple[str, str]]:
        return sorted(self._by_step.items())


registry = CompensationRegistry()
