"""Hybrid steps: one step name, one implementation per engine.

``@step(name="ocr.read", capability="ocr", engine="gpu")`` and the same with ``engine="cpu"``
declare two implementations of one step; the router only picks engines that have one, and
the task body runs the implementation of the engine whose queue delivered the message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from canvasflow.config.errors import DefinitionError
from canvasflow.workflows.runtime.execution import current_context

_implementations: dict[str, dict[str, Callable[..., Any]]] = {}
_dispatchers: dict[str, Callable[..., Any]] = {}


def add_implementation(
    task_name: str, engine: str, func: Callable[..., Any]
) -> tuple[Callable[..., Any], bool]:
    """Record ``func`` for ``engine``; return the task body (a dispatcher) and whether it is new."""
    impls = _implementations.setdefault(task_name, {})
    known = impls.get(engine)
    if known is not None and known is not func and known.__qualname__ != func.__qualname__:
        raise DefinitionError(f"step {task_name}: engine {engine!r} has two implementations")
    first = not impls
    impls[engine] = func
    if task_name not in _dispatchers:  # one body per step: Celery sees the same callable each time

        @functools.wraps(func)
        def dispatch(*args: Any, **kwargs: Any) -> Any:
            return implementation(task_name)(*args, **kwargs)

        _dispatchers[task_name] = dispatch
    return _dispatchers[task_name], first


def engines_of(task_name: str) -> list[str]:
    return sorted(_implementations.get(task_name, {}))


def implementation(task_name: str) -> Callable[..., Any]:
    """The implementation for the engine running the current step (from its delivery queue)."""
    impls = _implementations[task_name]
    ctx = current_context()
    engine = ctx.engine if ctx is not None else None
    if engine in impls:
        return impls[engine]
    if engine is None and len(impls) == 1:
        return next(iter(impls.values()))
    raise DefinitionError(
        f"step {task_name} has implementations for engines {sorted(impls)}, not for {engine!r}: "
        "route it through canvasflow (or call the implementation directly)"
    )
