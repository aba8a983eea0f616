"""The middleware interface: typed hooks the runtime calls around runs, steps, routing and
compensations, and the events they receive.

A middleware subclasses :class:`Middleware` and overrides the hooks it wants; every hook is a
no-op by default. Register one with ``registry.add_middleware(obj)`` or by settings
(``CANVASFLOW_MIDDLEWARE='["pkg.mod:Class"]'``): see :mod:`.registry`, which also tells
middleware from core listeners. This module imports nothing of canvasflow.

Hooks run in the process where the thing happened: step hooks in the worker that ran the
step, run hooks where the run started or finished, compensation hooks in the worker that ran
the compensation. Events carry wall-clock timestamps (``time.time()``) and durations in seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RunEvent:
    """A run started or finished."""

    run_id: str
    workflow: str
    version: str | None = None
    status: str = "running"  # on finish: succeeded | failed | compensated | compensation_failed | cancelled
    generation: int = 1
    at: float = field(default_factory=time.time)
    duration: float | None = None  # on finish: seconds since the run was created
    error: dict[str, Any] | None = None
    parent_run_id: str | None = None


@dataclass(slots=True)
class StepEvent:
    """A step was dispatched, started, succeeded, failed or will be retried."""

    run_id: str
    step_id: str  # a map chunk is "<step>#<n>"
    task: str
    generation: int = 1
    attempt: int = 1
    queue: str | None = None
    worker: str | None = None
    capability: str | None = None
    engine: str | None = None
    at: float = field(default_factory=time.time)
    duration: float | None = None  # success / failure / retry: seconds the body ran
    error: dict[str, Any] | None = None  # failure / retry: type, message, traceback
    retry_in: float | None = None  # retry: seconds until the next attempt
    # dispatch: a dict a middleware may write string entries into (e.g. a W3C traceparent);
    # the runtime sends it with the message and hands it back in the worker's step events
    carrier: dict[str, str] = field(default_factory=dict)
    # dispatch: the step runs in the dispatching process without a message of its own (chain
    # fusion or a fan-out bundle, docs/operations.md), so nothing is published for it
    fused: bool = False
    # a routed step's routing decisions, oldest first, earlier ones with their outcome; the
    # last is this delivery's (docs/routing.md, "Decisions in the journal")
    routes: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class RouteEvent:
    """The router chose an engine for a step that became ready."""

    run_id: str
    step_id: str
    capability: str
    engine: str
    queue: str
    strategy: str
    reason: str = ""
    decided_in: float = 0.0  # seconds the decision took
    tried: tuple[str, ...] = ()  # engines excluded (a fallback)
    at: float = field(default_factory=time.time)


@dataclass(slots=True)
class CompensationEvent:
    """A compensation of a completed step started, succeeded or failed."""

    run_id: str
    step_id: str  # the step being compensated
    task: str  # the compensation task
    attempt: int = 1
    idempotency_key: str | None = None
    worker: str | None = None
    at: float = field(default_factory=time.time)
    duration: float | None = None
    error: dict[str, Any] | None = None


class Middleware:
    """Override the hooks you need; each is a no-op here."""

    def on_run_start(self, event: RunEvent) -> None:
        """A run was created and its first steps are about to be dispatched."""

    def on_run_finish(self, event: RunEvent) -> None:
        """A run reached a terminal status (``event.status``)."""

    def on_step_dispatch(self, event: StepEvent) -> None:
        """A ready step is about to be published; write into ``event.carrier`` to send headers."""

    def on_route(self, event: RouteEvent) -> None:
        """The router picked an engine for a step."""

    def on_step_start(self, event: StepEvent) -> None:
        """A worker claimed a step and is about to run its body."""

    def on_step_success(self, event: StepEvent) -> None:
        """A step's body returned and its result was stored."""

    def on_step_failure(self, event: StepEvent) -> None:
        """A step failed for good (after its retries)."""

    def on_step_retry(self, event: StepEvent) -> None:
        """A step failed and will run again (``event.retry_in``)."""

    def on_step_progress(self, event: StepEvent, done: float, total: float | None, note: str | None) -> None:
        """A running step reported progress (``context().progress``)."""

    def on_compensation_start(self, event: CompensationEvent) -> None:
        """A compensation is about to run."""

    def on_compensation_success(self, event: CompensationEvent) -> None:
        """A compensation returned."""

    def on_compensation_failure(self, event: CompensationEvent) -> None:
        """A compensation raised (it may be retried; ``event.attempt`` says which try)."""


HOOKS = tuple(name for name in vars(Middleware) if name.startswith("on_"))
