"""The middleware interface: typed hooks the runtime calls around runs, steps, routing and
compensations.

A middleware subclasses :class:`Middleware` and overrides the hooks it wants; every hook is a
no-op by default. Register one in code (``add_middleware(obj)``) or by settings
(``CANVASFLOW_MIDDLEWARE='["pkg.mod:Class"]'``, built with no arguments in each process).

Two kinds of listeners:

* **middleware** (user code, metrics, traces, events, logs): a hook that raises is logged and
  never breaks a run;
* **core listeners** (the rollback): registered with ``core=True``; their exceptions propagate,
  because the runtime's own progress depends on them (the message is then redelivered).

Hooks run in the process where the thing happened: step hooks in the worker that ran the
step, run hooks where the run started or finished, compensation hooks in the worker that ran
the compensation. Events carry wall-clock timestamps (``time.time()``) and durations in seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("canvasflow.telemetry")


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


# -- the registry ------------------------------------------------------------------------
_core: list[Middleware] = []
_user: list[Middleware] = []
_loaded = False
# hook name -> (core listeners, other middleware) that override it: emitting a hook nobody
# overrides costs one dict lookup, so the runtime pays nothing when no middleware is registered
_index: dict[str, tuple[tuple[Middleware, ...], tuple[Middleware, ...]]] = {}


def _overrides(mw: Middleware, hook: str) -> bool:
    own = getattr(type(mw), hook, None)
    return own is not None and own is not getattr(Middleware, hook, None)


def _reindex() -> None:
    names = {n for mw in (*_core, *_user) for n in dir(type(mw)) if n.startswith("on_")}
    index = {}
    for name in names:
        core = tuple(mw for mw in _core if _overrides(mw, name))
        user = tuple(mw for mw in _user if _overrides(mw, name))
        if core or user:
            index[name] = (core, user)
    _index.clear()
    _index.update(index)


def add_middleware(middleware: Middleware, *, core: bool = False) -> Middleware:
    """Register a middleware in this process (``core=True``: its exceptions propagate)."""
    chain = _core if core else _user
    if middleware not in chain:
        chain.append(middleware)
        _reindex()
    return middleware


def remove_middleware(middleware: Middleware) -> None:
    for chain in (_core, _user):
        if middleware in chain:
            chain.remove(middleware)
    _reindex()


def middlewares() -> tuple[Middleware, ...]:
    """Every registered middleware, core listeners first, the settings' ones loaded on first use."""
    _load_from_settings()
    return (*_core, *_user)


def listening(hook: str) -> bool:
    """Whether any registered middleware overrides ``hook`` (build an event only then)."""
    if not _loaded:
        _load_from_settings()
    return hook in _index


def core_listening(hook: str) -> bool:
    """Whether a core listener (e.g. the rollback) overrides ``hook``."""
    entry = _index.get(hook)
    return bool(entry and entry[0])


def _load_from_settings() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from canvasflow.config.settings import get_settings

    for spec in getattr(get_settings(), "middleware", []) or []:
        add_middleware(_build(spec))
    from canvasflow.workflows.telemetry.builtin import from_settings  # metrics, tracing, events

    for builtin in from_settings(get_settings(), _user):
        add_middleware(builtin)


def reload_from_settings() -> None:
    """Build the settings' middleware again on next use (tests that change settings)."""
    global _loaded
    _loaded = False


def _build(spec: str) -> Middleware:
    """``pkg.mod:Class`` (or ``pkg.mod.Class``) built with no arguments."""
    import importlib

    from canvasflow.config.errors import SettingsError

    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SettingsError(
            f"CANVASFLOW_MIDDLEWARE: cannot load {spec!r} ({exc}); give 'package.module:Class'"
        ) from None
    made = target() if isinstance(target, type) else target
    if not isinstance(made, Middleware):
        raise SettingsError(f"CANVASFLOW_MIDDLEWARE: {spec!r} is not a canvasflow Middleware subclass")
    return made


def emit(hook: str, *args: Any) -> None:
    """Call ``hook`` on every middleware overriding it: core listeners may raise, the others are logged."""
    if not _loaded:
        _load_from_settings()
    entry = _index.get(hook)
    if entry is None:
        return
    core, user = entry
    for mw in core:
        getattr(mw, hook)(*args)
    for mw in user:
        try:
            getattr(mw, hook)(*args)
        except Exception:
            log.exception("middleware raised; the run goes on", middleware=type(mw).__name__, hook=hook)
