"""Parallel capability execution: one input on every live engine of a capability, then aggregated.

``parallel_capability(capability, action, payload, aggregate=...)`` is one signature usable in
a canvas or as a step of the DAG form. It is expanded when the run's graph is compiled (at
``start``, so it sees the fleet as it is then): one member per engine with a live worker,
each pinned to its engine's queue, then the aggregate on the capability's shared queue:

* ``"all"``: ``{engine: result}``;
* ``"majority"``: the most common result (ties to the higher-priority engine);
* ``"first"``: the first member to succeed wins; it completes its siblings with a
  ``{"revoked": True, "winner": engine}`` marker (so the join fires at once) and revokes
  their tasks with ``terminate=True``; a sibling that runs anyway (the revoke reached no
  worker) finds its step completed and does nothing, one that finishes in the same instant
  loses the race key and changes nothing (the race is run by the member's action task:
  workers/actions.py). A member whose handler raises does not win; when every member failed,
  the aggregate fails with each engine's error;
* a step signature: it receives the ``{engine: result}`` dict.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from celery import chord
from celery.canvas import Signature

from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import DefinitionError, EngineError, RoutingError
from canvasflow.config.queues import queue_for
from canvasflow.workers.engines import Engine
from canvasflow.workers.engines import registry as engines
from canvasflow.workers.routing.router import live_engines
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.runtime.wire import ACTION_TASK, AGGREGATE_TASK, PARALLEL_TASK

AGGREGATES = ("all", "first", "majority")


def parallel_capability(
    capability: str, action: str, payload: Any = None, aggregate: str | Signature = "all"
) -> Signature:
    """The action on every live engine of the capability (decided at start), then the aggregate."""
    if isinstance(aggregate, str) and aggregate not in AGGREGATES:
        raise DefinitionError(f"aggregate must be one of {AGGREGATES} or a step signature, not {aggregate!r}")
    if not isinstance(aggregate, str | Signature):
        raise DefinitionError(f"aggregate must be one of {AGGREGATES} or a step signature, not {aggregate!r}")
    kwargs = {"capability": capability, "action": action, "payload": payload, "aggregate": aggregate}
    return Signature(PARALLEL_TASK, kwargs=kwargs, immutable=True, app=current_app())


def live_members(capability: str) -> list[Engine]:
    """The capability's engines with a live worker now; RoutingError when there is none."""
    rt = runtime()
    live = live_engines(rt.redis, rt.settings, capability)
    if not live:
        declared = [e.name for e in engines.of(capability)]
        raise RoutingError(
            f"parallel_capability: no engine of {capability!r} has a live worker (declared: {declared}): "
            f"start one, e.g. `canvasflow worker --capability {capability} "
            f"--engine {(declared or ['NAME'])[0]}`"
        )
    return live


def parts(sig: Signature) -> tuple[list[tuple[str, Signature]], Signature, Signature | None]:
    """``([(engine name, member)], aggregate body, the author's aggregator step or None)``.

    Each member is the capability's action task (``canvasflow.action.<capability>``, registered
    by the engines' workers: workers/actions.py) pinned to its engine's queue."""
    spec = sig.kwargs
    cap, aggregate = spec["capability"], spec["aggregate"]
    live = live_members(cap)
    app = current_app()
    race = {"race": True} if aggregate == "first" else {}
    members = [
        (
            e.name,
            app.signature(
                ACTION_TASK.format(cap), args=(spec["action"], spec["payload"]), kwargs=race, immutable=True
            ).set(queue=e.queue),
        )
        for e in live
    ]
    how = aggregate if isinstance(aggregate, str) else "all"
    body = app.signature(
        AGGREGATE_TASK, kwargs={"engines": [e.key for e in live], "how": how}, queue=queue_for(cap)
    )
    author = None if isinstance(aggregate, str) else app.signature(aggregate)
    return members, body, author


def expand(sig: Signature) -> Signature:
    """The canvas a ``parallel_capability`` signature stands for (a chord, then the author's step)."""
    members, body, author = parts(sig)
    joined = chord([m for _, m in members], body)
    return joined if author is None else joined | author


# -- the aggregate step (its task: workflows/tasks.py) ---------------------------------------
def combine(results: list[Any], engines: list[str], how: str) -> Any:
    """``all``: ``{engine: result}``; ``majority``: the most common result (ties: the first
    engine's); ``first``: the winner's result."""
    if how == "first":
        won = [r["result"] for r in results if isinstance(r, dict) and r.get("won")]
        if won:
            return won[0]
        errors = [r["error"] for r in results if isinstance(r, dict) and "error" in r]
        raise EngineError(
            "parallel_capability: every engine failed: "
            + "; ".join(f"{e.get('engine')}: {e.get('type')}: {e.get('message')}" for e in errors)
        )
    by_engine = dict(zip(engines, results, strict=True))
    if how == "all":
        return by_engine
    counts = Counter(json.dumps(r, sort_keys=True) for r in results)
    top = max(counts.values())
    return next(r for r in results if counts[json.dumps(r, sort_keys=True)] == top)
