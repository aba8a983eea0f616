"""``performance_based``: the engine with the lowest recent step duration (an EWMA per engine).

An engine never measured is tried first; with probability ``exploration`` another engine is
picked instead (the least recently favoured: the slowest), so one that recovered is measured again.
"""

from __future__ import annotations

from collections.abc import Sequence

from canvasflow.workers.routing.snapshot import Choice, EngineState, StepNeeds

NAME = "performance_based"


def choose(candidates: Sequence[EngineState], needs: StepNeeds) -> Choice | None:
    if not candidates:
        return None
    unmeasured = [c for c in candidates if c.ewma_ms is None]
    if unmeasured:
        first = min(unmeasured, key=lambda c: (c.load, -c.engine.priority))
        return Choice(first, "not measured yet")
    ranked = sorted(candidates, key=lambda c: (c.ewma_ms or 0.0, c.load))
    if len(ranked) > 1 and needs.draw < needs.exploration:
        other = ranked[1 + int(needs.draw / needs.exploration * (len(ranked) - 1)) % (len(ranked) - 1)]
        return Choice(other, f"exploring ({other.ewma_ms:.1f} ms recently)")
    best = ranked[0]
    return Choice(best, f"fastest recently ({best.ewma_ms:.1f} ms EWMA)")
