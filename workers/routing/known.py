"""Known capabilities: no run sends a message to a queue that nobody serves.

A step's capability is *known* when it is declared (``CANVASFLOW_CAPABILITIES``, or a key of
``CANVASFLOW_CAPABILITY_MODULES``), when an engine serves it (``CANVASFLOW_ENGINES``,
``register_engine``), or when a live worker consumes its queue ``cap.<capability>`` (its
heartbeat says so). :func:`refuse_unknown` runs when a run starts, before anything is
journaled or enqueued, and names every unknown capability with the steps that need it.
The heartbeats are read only when the settings and engines leave a capability unknown,
so a run whose capabilities are declared costs no Redis read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from canvasflow.config.errors import RoutingError
from canvasflow.config.queues import CAPABILITY_PREFIX
from canvasflow.config.settings import Settings
from canvasflow.workers.beats import HasRedis, beats
from canvasflow.workers.engines import registry as engines


def declared(s: Settings) -> set[str]:
    """The capabilities the settings and the engine registry declare."""
    return {*s.capabilities, *s.capability_modules, *(e.capability for e in engines.all())}


def consumed(rt: HasRedis) -> set[str]:
    """The capabilities whose shared queue ``cap.<capability>`` a live worker consumes."""
    return {
        q[len(CAPABILITY_PREFIX) :]
        for beat in beats(rt).values()
        for q in beat.queues
        if q.startswith(CAPABILITY_PREFIX) and "." not in q[len(CAPABILITY_PREFIX) :]
    }


def unknown(rt: HasRedis, needs: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """``needs`` (capability -> the steps that need it) narrowed to the capabilities not known."""
    left = {cap: sorted(steps) for cap, steps in needs.items() if cap not in declared(rt.settings)}
    if left:
        served = consumed(rt)
        left = {cap: steps for cap, steps in left.items() if cap not in served}
    return left


def refuse_unknown(rt: HasRedis, needs: Mapping[str, Iterable[str]], what: str = "the run") -> None:
    """Raise RoutingError naming each unknown capability, its steps, and what would declare it."""
    left = unknown(rt, needs)
    if not left:
        return
    named = "; ".join(
        f"capability {cap!r} (step{'s' if len(steps) > 1 else ''} {', '.join(steps)})"
        for cap, steps in sorted(left.items())
    )
    first = sorted(left)[0]
    raise RoutingError(
        f"{what} was refused: no worker would ever receive its messages: {named} is not declared, "
        "has no engine and no live worker consumes its queue. Declare it in CANVASFLOW_CAPABILITIES "
        "(or CANVASFLOW_CAPABILITY_MODULES), declare an engine for it (CANVASFLOW_ENGINES or "
        f"register_engine), or start a worker for it: `canvasflow worker --capability {first}`"
    )
