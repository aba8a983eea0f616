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
  loses the race key and changes nothing. A member whose handler raises does not win; when
  every member failed, the aggregate fails with each engine's error;
* a step signature: it receives the ``{engine: result}`` dict.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import structlog
from celery import chord
from celery.canvas import Signature

from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import DefinitionError, EngineError, RoutingError
from canvasflow.config.queues import queue_for
from canvasflow.workers.engines import Engine
from canvasflow.workers.engines import registry as engines
from canvasflow.workflows.runtime.compiler import PARALLEL_TASK  # expanded by the compilers

log = structlog.get_logger("canvasflow.routing")

AGGREGATE_TASK = "canvasflow.aggregate"
AGGREGATES = ("all", "first", "majority")
RACE_KEY_TTL_S = 86_400


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
    from canvasflow.workers.routing.router import live_engines
    from canvasflow.workflows.runtime.context import runtime  # late: the runtime is the upper layer

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
    """``([(engine name, member)], aggregate body, the author's aggregator step or None)``."""
    from canvasflow.workers.actions import action_task

    spec = sig.kwargs
    cap, aggregate = spec["capability"], spec["aggregate"]
    live = live_members(cap)
    task = action_task(cap)
    race = {"race": True} if aggregate == "first" else {}
    members = [(e.name, task.si(spec["action"], spec["payload"], **race).set(queue=e.queue)) for e in live]
    how = aggregate if isinstance(aggregate, str) else "all"
    body = current_app().signature(
        AGGREGATE_TASK, kwargs={"engines": [e.key for e in live], "how": how}, queue=queue_for(cap)
    )
    author = None if isinstance(aggregate, str) else current_app().signature(aggregate)
    return members, body, author


def expand(sig: Signature) -> Signature:
    """The canvas a ``parallel_capability`` signature stands for (a chord, then the author's step)."""
    members, body, author = parts(sig)
    joined = chord([m for _, m in members], body)
    return joined if author is None else joined | author


# -- the race of aggregate="first" (in the member's worker) ------------------------------------
def race(run: Any) -> dict[str, Any]:
    """Run one member of a ``first`` race: ``{"won": True, ...}``, ``{"lost": ...}`` or ``{"error": ...}``."""
    from canvasflow.workflows.runtime.context import runtime
    from canvasflow.workflows.runtime.execution import context
    from canvasflow.workflows.runtime.executor import error_info

    ctx = context()
    rt = runtime()
    mine = _engine_of(ctx.queue)
    try:
        value = run()
    except Exception as exc:  # a failed member does not win; the others may
        log.warning("parallel_capability member failed", engine=mine, error=str(exc))
        return {"error": {**error_info(exc), "engine": mine}}
    graph = rt.graph(ctx.run_id, ctx.generation)
    join = graph.successors(ctx.step_id)[0]
    key = rt.state.key(ctx.run_id, f"race:{join}")
    if not rt.redis.set(key, ctx.step_id, nx=True, ex=RACE_KEY_TTL_S):
        raw = rt.redis.get(key)
        winner = raw.decode() if isinstance(raw, bytes) else raw
        if winner != ctx.step_id:  # another member won (not a redelivery of the winner)
            return {"lost": _engine_of(graph.steps[winner].options.get("queue")) if winner else None}
    siblings = [s for s in graph.steps[join].deps if s != ctx.step_id]
    _finish_siblings(rt, ctx.run_id, ctx.generation, siblings, mine)
    return {"won": True, "engine": mine, "result": value}


def _finish_siblings(rt: Any, run_id: str, gen: int, siblings: list[str], winner: str | None) -> None:
    """Complete the losers with a marker (the join fires now), then revoke their tasks."""
    from canvasflow.workflows.runtime.executor import complete, task_id_for

    marker = {"revoked": True, "winner": winner}
    for sid in siblings:
        complete(rt, run_id, sid, gen, marker, json.dumps(marker), None)
    ids = [task_id_for(run_id, sid, gen) for sid in siblings]
    if ids:
        rt.app.control.revoke(ids, terminate=True, signal="SIGTERM")
        log.info("parallel_capability: first success wins, the others revoked", winner=winner, revoked=ids)


def _engine_of(queue: str | None) -> str | None:
    from canvasflow.workers.engines import engines_in

    found = engines_in([queue]) if queue else []
    return found[0] if found else None


# -- the aggregate step ------------------------------------------------------------------------
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


def _register_aggregate() -> None:
    from canvasflow.workers.step import step

    @step(name=AGGREGATE_TASK, capability="default")
    def aggregate(results: list[Any], engines: list[str], how: str) -> Any:
        return combine(results, engines, how)


_register_aggregate()
