"""Step arguments marked secret (``@step(secret=["card_number"])``, or ``secret=True`` for all).

Their values travel to the step in its message (the broker must be trusted: see
docs/security.md) and are kept in the run's Redis state while it runs, but nowhere an
operator or a log reader looks:

* Celery's task events (Flower) and worker logs show ``'***'`` for them (``argsrepr``);
* the journal (the run's ``inputs`` and ``graph``, and so ``canvasflow status``) keeps
  ``"***"`` instead of each secret value, wherever that value appears in the inputs.

A resume rebuilds the run from the journal: a step whose secret arguments came from the
inputs then gets ``"***"``. Start such a run again rather than resuming it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any

MASK = "***"


def secret_fields(task: Any) -> bool | tuple[str, ...]:
    """True (every argument), the names of the secret parameters, or () for none."""
    value = getattr(task, "secret_fields", ())
    return value if value is True else tuple(value or ())


def _param_names(task: Any) -> list[str]:
    try:
        return list(inspect.signature(task.run).parameters)
    except (TypeError, ValueError):
        return []


def secret_positions(task: Any, n_args: int, kwargs: Mapping[str, Any]) -> tuple[set[int], set[str]]:
    """Which positional indexes and keyword names of a call carry secrets."""
    fields = secret_fields(task)
    if fields is True:
        return set(range(n_args)), set(kwargs)
    chosen = set(fields) if isinstance(fields, tuple) else set()
    names = _param_names(task)
    return {i for i, n in enumerate(names[:n_args]) if n in chosen}, {k for k in kwargs if k in chosen}


def masked(task: Any, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]] | None:
    """The call with its secrets masked, or None when the step declares no secret."""
    if not secret_fields(task):
        return None
    pos, names = secret_positions(task, len(args), kwargs)
    return (
        [MASK if i in pos else a for i, a in enumerate(args)],
        {k: MASK if k in names else v for k, v in kwargs.items()},
    )


def _leaves(expr: Any) -> list[Any]:
    """The literal values of a graph expression (``{"v": ...}``, lists ``l`` and dicts ``d``)."""
    if not isinstance(expr, dict):
        return []
    if "v" in expr:
        return [expr["v"]]
    if "l" in expr:
        return [x for item in expr["l"] for x in _leaves(item)]
    if "d" in expr:
        return [x for item in expr["d"].values() for x in _leaves(item)]
    return []


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _scrub(value: Any, secrets: set[str]) -> Any:
    if _key(value) in secrets:
        return MASK
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def for_journal(tasks: Mapping[str, Any], graph: dict[str, Any], inputs: Any) -> tuple[dict[str, Any], Any]:
    """The graph and inputs as the journal may keep them: every secret value replaced by ``"***"``."""
    found: set[str] = set()
    for node in graph.get("steps") or []:
        task = tasks.get(node.get("task") or "")
        if task is None or not secret_fields(task):
            continue
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
        pos, names = secret_positions(task, len(args), kwargs)
        for expr in [args[i] for i in pos] + [kwargs[k] for k in names]:
            found.update(_key(v) for v in _leaves(expr) if v not in (None, "", 0, False))
    if not found:
        return graph, inputs
    return _scrub(graph, found), _scrub(inputs, found)
