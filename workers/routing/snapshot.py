"""What a routing strategy sees: each candidate engine with its live load and recent speed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from canvasflow.workers.engines import Engine, Resource


@dataclass
class EngineState:
    """One engine as the live view saw it (``queued`` also counts this process's own sends since)."""

    engine: Engine
    workers: int = 0
    consumers: int = 0
    inflight: int = 0
    queued: int = 0
    ewma_ms: float | None = None

    @property
    def live(self) -> bool:
        return self.workers > 0

    @property
    def load(self) -> float:
        """Queued plus in-flight steps per live consumer."""
        return (self.queued + self.inflight) / max(self.consumers, 1)


@dataclass(frozen=True)
class StepNeeds:
    """What the step asks of an engine, and a random draw in [0, 1) for strategies that explore."""

    step_id: str
    capability: str
    requires: Mapping[str, Resource] = field(default_factory=dict)
    draw: float = 1.0
    exploration: float = 0.0


@dataclass(frozen=True)
class Choice:
    engine: EngineState
    reason: str
