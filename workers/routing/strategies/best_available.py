"""``best_available``: the highest-priority engine with a live worker."""

from __future__ import annotations

from collections.abc import Sequence

from canvasflow.workers.routing.snapshot import Choice, EngineState, StepNeeds

NAME = "best_available"


def choose(candidates: Sequence[EngineState], needs: StepNeeds) -> Choice | None:
    best = max(candidates, key=lambda c: c.engine.priority, default=None)
    if best is None:
        return None
    return Choice(best, f"highest priority ({best.engine.priority}) with a live worker")
