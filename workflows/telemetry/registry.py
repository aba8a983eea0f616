"""The middleware registry of this process: who listens to which hook, and :func:`emit`.

Two kinds of listeners:

* **middleware** (user code, metrics, traces, events, logs): a hook that raises is logged and
  never breaks a run;
* **core listeners** (the rollback): registered with ``core=True``; their exceptions propagate,
  because the runtime's own progress depends on them (the message is then redelivered).

The settings' middleware is built on first use (the first :func:`emit` or :func:`listening`),
in this order: the classes ``CANVASFLOW_MIDDLEWARE`` lists (``pkg.mod:Class``, built with no
arguments), then what each factory given to :func:`use_builtins` adds for the settings. The
composition root (``canvasflow.app``) gives it canvasflow's built-ins (metrics, tracing, the
event stream: ``telemetry/builtin.py``) and registers the rollback as a core listener; this
module knows neither.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import Settings, get_settings
from canvasflow.workflows.telemetry.hooks import Middleware

log = structlog.get_logger("canvasflow.telemetry")

# (settings, the middleware registered so far) -> the middleware to add for those settings
Builtins = Callable[[Settings, Iterable[Middleware]], Iterable[Middleware]]

_core: list[Middleware] = []
_user: list[Middleware] = []
_builtins: list[Builtins] = []
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
    """Register a middleware in this process (``core=True``: its exceptions propagate); once."""
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


def use_builtins(factory: Builtins) -> None:
    """Add what ``factory(settings, present)`` returns to the settings' middleware (once a
    factory); when the settings' middleware is loaded already, at once."""
    if factory in _builtins:
        return
    _builtins.append(factory)
    if _loaded:
        _add_builtins(factory, get_settings())


def _add_builtins(factory: Builtins, settings: Settings) -> None:
    for builtin in factory(settings, _user):
        add_middleware(builtin)


def _load_from_settings() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    settings = get_settings()
    for spec in getattr(settings, "middleware", []) or []:
        add_middleware(_build(spec))
    for factory in _builtins:
        _add_builtins(factory, settings)


def reload_from_settings() -> None:
    """Build the settings' middleware again on next use (tests that change settings)."""
    global _loaded
    _loaded = False


def _build(spec: str) -> Middleware:
    """``pkg.mod:Class`` (or ``pkg.mod.Class``) built with no arguments."""
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
