"""``load_balanced``: the engine with the least queued plus in-flight steps per live consumer."""

from __future__ import annotations

from collections.abc import Sequence

from canvasflow.workers.routing.snapshot import Choice, EngineState, StepNeeds

NAME = "load_balanced"


def least_loaded(candidates: Sequence[EngineState]) -> EngineState | None:
    """Lowest load; ties go to the higher priority, then to the name (stable)."""
    return min(candidates, key=lambda c: (c.load, -c.engine.priority, c.engine.name), default=None)


def choose(candidates: Sequence[EngineState], needs: StepNeeds) -> Choice | None:
    best = least_loaded(candidates)
    if best is None:
        return None
    return Choice(best, f"least loaded ({best.queued} queued + {best.inflight} in flight / {best.consumers})")
