"""A step's routing decisions, in the order they were made, each with what became of it.

A routed step's message carries its current decision as the header's ``route``
(``{"engine", "queue", "strategy", "reason", "at"}``) and every earlier one, with its
outcome, under ``route["past"]``. Whoever supersedes a decision appends it there: the
fallback after an :class:`EngineError` (``"EngineError"``), a takeover from an engine with no
live worker (``"taken over"``), ``route_timeout`` (``"timed out"``), a worker that claims a step
a dead worker had started (``"engine died"``, with that worker and attempt). The journal keeps
the whole list in the step's ``routes`` column (migration 0004): :func:`journaled`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from canvasflow.config.queues import engines_in

Decision = dict[str, Any]
OUTCOMES = ("ran", "EngineError", "engine died", "timed out", "taken over")
FIELDS = ("engine", "queue", "strategy", "reason", "at", "workflow", "implementation")
PINNED = "pinned"  # the strategy named for a parallel_capability member: one per live engine


def decision_of(route: Mapping[str, Any]) -> Decision:
    """The decision itself, without the list of earlier ones."""
    return {k: route[k] for k in FIELDS if route.get(k) is not None}


def superseded(route: Mapping[str, Any], outcome: str, **extra: Any) -> list[Decision]:
    """``route``'s past followed by ``route`` itself, ended with ``outcome``: the new route's past."""
    ended = {**decision_of(route), "outcome": outcome, **{k: v for k, v in extra.items() if v is not None}}
    return [*route.get("past", ()), ended]


def readdressed(route: Mapping[str, Any], engine: str, queue: str, reason: str, at: float) -> Decision:
    """``route`` taken by another engine (takeover or ``route_timeout``); the old one goes to the past."""
    outcome = "timed out" if "route_timeout" in reason else "taken over"
    return {
        **route,
        "engine": engine,
        "queue": queue,
        "reason": reason,
        "at": at,
        "tried": [*route.get("tried", []), route["engine"]],
        "past": superseded(route, outcome),
    }


def after_death(route: Mapping[str, Any], previous: Mapping[str, Any], attempt: int) -> Decision:
    """``route`` as claimed again after a delivery that never finished (its worker died):
    that attempt joins the past as ``engine died``, unless the past holds it already (a
    fallback journals its own attempt), replacing a ``taken over`` of the same engine."""
    before = previous.get("route") or route
    worker = previous.get("worker")
    past = list(route.get("past", ()))
    if any(p.get("worker") == worker and p.get("engine") == before.get("engine") for p in past):
        return dict(route)
    died = {
        **decision_of(before),
        "outcome": "engine died",
        "worker": worker,
        "attempt": attempt,
        "started_at": previous.get("started_at"),
    }
    if past and past[-1].get("engine") == died["engine"] and past[-1].get("outcome") == "taken over":
        past[-1] = {**past[-1], **{k: v for k, v in died.items() if k != "reason"}}
    else:
        past.append({k: v for k, v in died.items() if v is not None})
    return {**route, "past": past}


def outcome_of(status: str | None, error: Any) -> str | None:
    """What became of the current decision, from the step's journaled status (None: not yet)."""
    if status == "queued":  # re-routed: the engine failed it
        return "EngineError"
    if status in ("succeeded", "failed", "partial"):
        if status == "failed" and isinstance(error, Mapping) and error.get("type") == "EngineError":
            return "EngineError"
        return "ran"
    return None


def journaled(route: Mapping[str, Any], status: str | None, error: Any = None) -> list[Decision]:
    """Every decision of the step, oldest first, the current one with its outcome when known."""
    current = decision_of(route)
    outcome = outcome_of(status, error)
    if outcome is not None:
        current["outcome"] = outcome
    return [*route.get("past", ()), current]


def pinned_route(queue: str | None) -> Decision | None:
    """The decision of a step pinned to an engine's queue at start (a ``parallel_capability``
    member: one per live engine), None for any other queue."""
    found = engines_in([queue]) if queue else []
    if not found:
        return None
    return {
        "engine": found[0],
        "queue": queue,
        "strategy": PINNED,
        "reason": "parallel_capability: one member on each live engine, chosen at start",
        "at": round(time.time(), 3),
    }


def describe(decision: Mapping[str, Any]) -> str:
    """One decision as text: ``rfb/flaky (best_available: highest priority ...) -> EngineError``."""
    text = f"{decision.get('engine')} ({decision.get('strategy')}: {decision.get('reason')})"
    if decision.get("outcome"):
        text += f" -> {decision['outcome']}"
        if decision.get("worker") and decision["outcome"] != "ran":
            text += f" on {decision['worker']}"
    return text


def chain_text(decisions: Any, route: Any = None) -> str:
    """A step's decisions, oldest first, joined by `` | ``; its single route when it has no list."""
    found = decisions if isinstance(decisions, list) and decisions else ([route] if route else [])
    return " | ".join(describe(d) for d in found if isinstance(d, Mapping) and d.get("engine"))
