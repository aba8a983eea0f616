"""``resource_aware``: among engines offering the step's ``requires``, the least loaded.

The router already keeps only engines that satisfy ``requires`` (for every strategy), so
this is ``load_balanced`` that says why it chose."""

from __future__ import annotations

from collections.abc import Sequence

from canvasflow.workers.routing.snapshot import Choice, EngineState, StepNeeds
from canvasflow.workers.routing.strategies.load_balanced import least_loaded

NAME = "resource_aware"


def choose(candidates: Sequence[EngineState], needs: StepNeeds) -> Choice | None:
    fit = [c for c in candidates if c.engine.satisfies(dict(needs.requires))]
    best = least_loaded(fit)
    if best is None:
        return None
    wanted = ", ".join(f"{k}={v}" for k, v in needs.requires.items()) or "nothing"
    return Choice(best, f"offers {wanted}; least loaded of {len(fit)}")
