"""The runs in flight: the index the recovery sweep watches, and how long a run has been idle.

A run is active while the journal says so (``ACTIVE_SQL``) or while it is in the Redis set
``<prefix>:active``, kept by start and resume (:func:`mark_active`) and pruned by recovery
once the run has settled. The set lets the sweep find a run's steps while the journal is
down; :func:`idle_seconds` tells a stalled run from a moving one.
"""

from __future__ import annotations

import time
from datetime import datetime

import structlog

from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.state import as_text

log = structlog.get_logger("canvasflow.sweep")
ACTIVE_SQL = ("pending", "running", "waiting", "compensating")


def active_key(rt: Runtime) -> str:
    return f"{rt.settings.key_prefix}:active"


def mark_active(rt: Runtime, run_id: str) -> None:
    """Index a run the sweep must watch (start and resume call this; the sweep prunes it)."""
    rt.redis.sadd(active_key(rt), run_id)


def active_runs(rt: Runtime) -> dict[str, int | None]:
    """Non-terminal runs, the journal's (when it answers) and the Redis index's, with the
    generation the journal holds (None when only Redis knows the run)."""
    runs: dict[str, int | None] = {as_text(x): None for x in rt.redis.smembers(active_key(rt))}
    try:
        runs.update(rt.store.runs_with_status(ACTIVE_SQL))
    except Exception as exc:  # the journal is down: Redis still knows the runs it runs
        log.warning("sweep: journal unreachable, watching the Redis index only", error=str(exc))
    return dict(sorted(runs.items()))


def has_state(rt: Runtime, run_id: str) -> bool:
    return bool(rt.redis.exists(rt.state.key(run_id, "graph")))


def _last_redis_progress(rt: Runtime, run_id: str) -> float | None:
    latest = None
    for meta in rt.state.step_info(run_id).values():
        for key in ("finished_at", "started_at"):
            if meta.get(key):
                at = datetime.fromisoformat(meta[key]).timestamp()
                latest = at if latest is None else max(latest, at)
    return latest


def idle_seconds(rt: Runtime, run_id: str) -> float | None:
    """Seconds since the run last moved (its newest journal event or step claim/completion)."""
    last = rt.store.last_event_at(run_id)
    stamps = [last.timestamp()] if last else []
    try:
        live = _last_redis_progress(rt, run_id)
    except Exception:  # Redis down: the journal alone tells
        live = None
    if live is not None:
        stamps.append(live)
    return time.time() - max(stamps) if stamps else None
