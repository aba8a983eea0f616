"""The routing strategies by name: the built-in ones (one module each) and those registered
with :func:`register_strategy`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from canvasflow.config.errors import RoutingError
from canvasflow.workers.routing.snapshot import Choice, EngineState, StepNeeds
from canvasflow.workers.routing.strategies import (
    best_available,
    load_balanced,
    performance_based,
    resource_aware,
)


class Strategy(Protocol):
    def __call__(self, candidates: Sequence[EngineState], needs: StepNeeds) -> Choice | None: ...


_strategies: dict[str, Strategy] = {}


def register_strategy(name: str, fn: Strategy) -> Strategy:
    """Make ``fn`` usable as ``route=name``; a second function under a taken name is refused."""
    known = _strategies.get(name)
    if known is not None and known is not fn:
        raise RoutingError(f"a routing strategy named {name!r} is registered already: pick another name")
    _strategies[name] = fn
    return fn


def strategy(name: str) -> Strategy:
    found = _strategies.get(name)
    if found is None:
        raise RoutingError(
            f"unknown routing strategy {name!r}: use one of {sorted(_strategies)} "
            "or register it with canvasflow.register_strategy"
        )
    return found


def names() -> list[str]:
    return sorted(_strategies)


for _builtin in (best_available, load_balanced, performance_based, resource_aware):
    register_strategy(_builtin.NAME, _builtin.choose)
