"""The router: when a step becomes ready, pick the engine (and so the queue) that runs it.

A routed step carries ``routing = {"capability", "strategy", "requires"}`` in its graph node
(set by the compiler for a capability that has engines, or a step given ``route=``/``requires=``).
:func:`decide` is pure (a snapshot in, a decision out); :func:`route_step` feeds it this
process's cached live view. :func:`preflight` refuses a run whose routed steps cannot run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import redis

from canvasflow.config.errors import RoutingError
from canvasflow.config.settings import Settings
from canvasflow.workers.engines import Engine, registry
from canvasflow.workers.routing.live import view_for
from canvasflow.workers.routing.snapshot import EngineState, StepNeeds
from canvasflow.workers.routing.strategies import strategy

Decision = dict[str, Any]
# the strategies whose choice is a matter of load: a step may stay near its predecessor
LOCAL = frozenset({"load_balanced", "resource_aware"})
NONE_LIVE = "no live worker fits"  # the reason of a step parked on a declared engine's queue
_GOLDEN = 0.6180339887498949
_last_draw = random.random()


def next_draw() -> float:
    """This process's next draw in [0, 1): an additive golden-ratio sequence from a random start.

    Uniform like ``random.random()``, but evenly spread: an exploration rate of 5% explores one
    decision in 13 to 34 (20 on average), never a run of them by chance, so a strategy that
    explores still sends its share to the best engine within any 20 steps."""
    global _last_draw
    _last_draw = (_last_draw + _GOLDEN) % 1.0
    return _last_draw


def _reseed() -> None:  # a forked pool process starts its own sequence
    global _last_draw
    _last_draw = random.random()


os.register_at_fork(after_in_child=_reseed)


def decide(
    states: Mapping[str, EngineState],
    step_id: str,
    routing: Mapping[str, Any],
    default_strategy: str,
    *,
    exclude: Collection[str] = (),
    draw: float = 1.0,
    exploration: float = 0.0,
    prefer: str | None = None,
    margin: float = 0.0,
) -> Decision:
    """The engine for one step: a strategy's choice among the live engines that fit, else a wait.

    ``prefer``: the engine that ran the step's predecessor in this worker; a load-based strategy
    keeps the step there while its load is within ``margin`` of its own choice's (locality)."""
    cap = routing["capability"]
    name = routing.get("strategy") or default_strategy
    requires = routing.get("requires") or {}
    choose = strategy(name)
    only = routing.get("engines")  # a hybrid step: the engines that have an implementation
    fit = [
        states[e.key]
        for e in registry.of(cap)
        if e.key in states and e.satisfies(requires) and (not only or e.name in only)
    ]
    if not fit:
        raise RoutingError(f"step {step_id}: no engine of capability {cap!r} offers {requires}: declare one")
    live = [c for c in fit if c.live and c.engine.key not in exclude]
    choice = choose(live, StepNeeds(step_id, cap, requires, draw, exploration)) if live else None
    if choice is None:
        untried = [c for c in fit if c.engine.key not in exclude] or fit
        waits = untried[0]
        return _decision(waits, name, f"{NONE_LIVE}: waiting on {waits.engine.key}")
    if prefer and margin > 0 and name in LOCAL and choice.engine.engine.key != prefer:
        near = next((c for c in live if c.engine.key == prefer), None)
        if near is not None and near.load <= choice.engine.load + margin:
            reason = (
                f"ran the step before it; load {near.load:.2f} within {margin:g} of the least loaded "
                f"({choice.engine.engine.key}: {choice.engine.load:.2f})"
            )
            return _decision(near, name, reason)
    return _decision(choice.engine, name, choice.reason)


def live_left(r: redis.Redis, s: Settings, routing: Mapping[str, Any], exclude: Collection[str]) -> bool:
    """Whether an engine not tried yet, fitting the step and with a live worker, is left."""
    view = view_for(r, s.key_prefix, s.route_cache_ttl, _depths(s))
    requires = routing.get("requires") or {}
    fitting = [
        e for e in registry.of(routing["capability"]) if e.key not in exclude and e.satisfies(requires)
    ]
    for states in (view.states(), view.fresh()):  # read again before saying none is left
        if any(e.key in states and states[e.key].live for e in fitting):
            return True
    return False


def live_engines(r: redis.Redis, s: Settings, capability: str) -> list[Engine]:
    """The capability's engines with a live worker, highest priority first (the view read now)."""
    states = view_for(r, s.key_prefix, s.route_cache_ttl, _depths(s)).fresh()
    return [e for e in registry.of(capability) if e.key in states and states[e.key].live]


def _decision(state: EngineState, strategy_name: str, reason: str) -> Decision:
    decision = {
        "engine": state.engine.key,
        "queue": state.engine.queue,
        "strategy": strategy_name,
        "reason": reason,
    }
    if state.engine.workflow:  # the step runs as a child run of this workflow
        decision["workflow"] = state.engine.workflow
    return decision


def route_step(
    r: redis.Redis,
    s: Settings,
    step_id: str,
    routing: Mapping[str, Any],
    exclude: Collection[str] = (),
    *,
    prefer: str | None = None,
    count: bool = True,
) -> Decision:
    """Decide with this process's live view (read again after ``route_cache_ttl``) and count the
    send (``count=False``: the caller counts it with :func:`sent` if it publishes the step)."""
    view = view_for(r, s.key_prefix, s.route_cache_ttl, _depths(s))
    draw = next_draw()
    for states in (view.states(), None):
        decision = decide(
            states if states is not None else view.fresh(),  # no live engine: read the view again
            step_id,
            routing,
            s.route_strategy,
            exclude=exclude,
            draw=draw,
            exploration=s.route_exploration,
            prefer=prefer,
            margin=s.route_locality_margin,
        )
        if not decision["reason"].startswith(NONE_LIVE):
            break
    if count:
        view.sent(decision["engine"])
    return decision


def sent(r: redis.Redis, s: Settings, engine_key: str) -> None:
    """Count one step published to ``engine_key`` in this process's live view."""
    view_for(r, s.key_prefix, s.route_cache_ttl, _depths(s)).sent(engine_key)


def _depths(s: Settings) -> bool:
    """Queue depths come from the broker when it is the Redis server holding the state."""
    return s.broker_url.startswith("redis") and s.broker_url == s.redis_state_url


def preflight(r: redis.Redis, s: Settings, routed: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Refuse (before anything is created) steps whose routing names what does not exist or cannot run."""
    problems: list[str] = []
    view = None
    for step_id, routing in routed:
        cap, requires = routing["capability"], routing.get("requires") or {}
        try:
            strategy(routing.get("strategy") or s.route_strategy)
        except RoutingError as exc:
            problems.append(f"step {step_id}: {exc}")
            continue
        engines = registry.of(cap)
        if not engines:
            problems.append(
                f"step {step_id}: capability {cap!r} has no engine: declare one (CANVASFLOW_ENGINES) "
                "or drop route=/requires= to use the plain cap.<capability> queue"
            )
            continue
        declared = {k for e in engines for k in e.resources}
        unknown = sorted(set(requires) - declared)
        if unknown:
            problems.append(
                f"step {step_id}: requires {unknown} but no engine of {cap!r} declares them "
                f"(declared: {sorted(declared)})"
            )
            continue
        if s.route_when_none_live == "wait":  # the step waits for a worker of an engine that fits
            continue
        view = view or view_for(r, s.key_prefix, s.route_cache_ttl, _depths(s))
        only = routing.get("engines")  # a hybrid step: the engines that have an implementation
        fitting = [e for e in engines if e.satisfies(requires) and (not only or e.name in only)]
        states = view.states()
        live = [e for e in fitting if e.key in states and states[e.key].live]
        if not live:  # read again before refusing: a worker may have just started
            states = view.fresh()
            live = [e for e in fitting if e.key in states and states[e.key].live]
        if not live:
            fits = [e.name for e in fitting] or ["(none fits)"]
            problems.append(
                f"step {step_id}: no live worker for capability {cap!r}"
                + (f" offering {dict(requires)}" if requires else "")
                + f": start one, e.g. `canvasflow worker --capability {cap} --engine {fits[0]}`"
                + " (or set CANVASFLOW_ROUTE_WHEN_NONE_LIVE=wait to start runs that wait for one)"
            )
    if problems:
        raise RoutingError("the run was refused: " + "; ".join(problems))


def workflow_inputs(args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A step's arguments as the inputs of the workflow engine that runs it: its keyword
    arguments, a dict positional argument merged in, other positional ones under ``args``."""
    inputs = dict(kwargs)
    rest = []
    for arg in args:
        if isinstance(arg, dict):
            inputs.update(arg)
        else:
            rest.append(arg)
    if rest:
        inputs["args"] = rest
    return inputs
