"""Recovery of runs an outage left behind: lost Redis state, SQL behind Redis, stalled runs.

* :func:`rebuild_if_lost` -- a run the journal calls active has no Redis state (Redis restarted
  without persistence, or was flushed): rebuild it from the journal. Steps journaled
  ``succeeded`` keep their results; the rest run again in a new generation
  (:func:`resumption.restart`, the same path as ``resume``), so a delivery of the old
  generation still in flight is skipped at its claim.
* :func:`reconcile` -- Redis ended a run but the journal still says it runs (the database was
  down when it ended): write the steps and the run's end into SQL.
* :func:`stalled_runs` -- active runs with no progress for a while (``runtime.active.idle_seconds``).
* :func:`recover` -- all of the above once, now (``canvasflow recover``); the periodic sweep
  (:mod:`canvasflow.workflows.runs.sweep`) does the same with a short grace period.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

import structlog

from canvasflow.compensation import rollback
from canvasflow.workflows.runs.resumption import restart
from canvasflow.workflows.runs.rollbacks import rehydrate
from canvasflow.workflows.runtime import events
from canvasflow.workflows.runtime.active import (
    ACTIVE_SQL,
    active_key,
    active_runs,
    has_state,
    idle_seconds,
    note_suspicions,
)
from canvasflow.workflows.runtime.advance import finish_run
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.failure import close_failed
from canvasflow.workflows.runtime.journal import sync_compensations, sync_steps
from canvasflow.workflows.runtime.state import as_text
from canvasflow.workflows.store.records import TERMINAL, RunRecord

log = structlog.get_logger("canvasflow.recovery")
GRACE = 3.0  # seconds a run must look lost or unreconciled before the sweep acts


@dataclass
class SweepReport:
    """What one recovery pass did (``canvasflow recover``, or one sweep of the thread)."""

    redispatched: list[tuple[str, str]] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)
    progressed: list[str] = field(default_factory=list)


def _ripe(rt: Runtime, run_id: str, what: str, patient: bool) -> bool:
    """True once ``what`` was seen for ``GRACE`` seconds (always, when not ``patient``)."""
    if not patient:
        return True
    key, now = rt.state.key(run_id, "suspect"), time.time()
    first = rt.redis.hget(key, what)
    if first is None:
        note_suspicions(rt, run_id, {what: now}, when_lost=what == "__rebuild__")
        return False
    return now - float(first) >= GRACE


def _settled(rt: Runtime, run_id: str) -> None:
    rt.redis.srem(active_key(rt), run_id)
    rt.redis.delete(rt.state.key(run_id, "suspect"))


def rebuild_if_lost(rt: Runtime, run_id: str, *, patient: bool = True) -> bool:
    """Rebuild the Redis state of an active run whose state is gone; True when it did."""
    record = rt.store.get_run(run_id)
    if record is None or record.status in TERMINAL:
        _settled(rt, run_id)
        return False
    if not _ripe(rt, run_id, "__rebuild__", patient):
        return False
    if record.status == "compensating":
        rehydrate(rt, record)  # succeeded steps from the journal; the rollback goes on from there
        undone = {s.step_id: "compensated" for s in record.steps if s.compensation_status == "compensated"}
        if undone:  # journaled compensations are not run again
            rt.redis.hset(rt.state.key(run_id, "comp"), mapping=cast(dict[Any, Any], undone))
        log.warning("rebuilt a compensating run's state from the journal", run_id=run_id)
        rollback.progress(rt, run_id, record.generation)
        return True
    kept = sum(s.status == "succeeded" for s in record.steps)
    if restart(rt, record, (record.status,)):
        log.warning("rebuilt a run's lost state from the journal", run_id=run_id, kept=kept)
        rt.redis.hdel(rt.state.key(run_id, "suspect"), "__rebuild__")
        return True
    return False


def stale_reason(rt: Runtime, record: RunRecord, redis_gen: int) -> str | None:
    """Why the run's Redis state is older than its journal (restored from an old snapshot, or a
    partial loss), or None. Steps are compared only when ``record`` carries them."""
    if record.generation > redis_gen:
        return f"Redis holds generation {redis_gen}, the journal {record.generation}"
    if not record.steps:
        return None
    states = rt.state.step_states(record.id)
    missing = [
        s.step_id for s in record.steps if s.status == "succeeded" and states.get(s.step_id) != "succeeded"
    ]
    return f"the journal has steps {missing} succeeded, Redis does not" if missing else None


def rebuild_if_stale(
    rt: Runtime, run_id: str, redis_gen: int, *, thorough: bool = False, patient: bool = True
) -> bool:
    """Rebuild a running run whose Redis state is behind its journal; True when it did."""
    record = rt.store.get_run(run_id, with_steps=thorough)
    if record is None or record.status not in ("running", "waiting"):
        return False
    reason = stale_reason(rt, record, redis_gen)
    if reason is None or not _ripe(rt, run_id, "__stale__", patient):
        return False
    if not thorough:
        record = rt.store.get_run(run_id) or record
    if restart(rt, record, (record.status,)):
        log.warning("rebuilt a run's stale state from the journal", run_id=run_id, reason=reason)
        return True
    return False


def reconcile(rt: Runtime, run_id: str, redis_status: str, *, patient: bool = True) -> bool:
    """Bring the journal to a run's Redis status when SQL lags behind; True when it changed SQL."""
    record = rt.store.get_run(run_id, with_steps=False)
    if record is None:
        _settled(rt, run_id)
        return False
    if record.status == redis_status:
        if redis_status in TERMINAL:
            sync_steps(rt, run_id)  # a step record the journal missed
            _settled(rt, run_id)
        return False
    if record.status in TERMINAL or not _ripe(rt, run_id, "__reconcile__", patient):
        return False
    raw = rt.redis.hget(rt.state.key(run_id, "meta"), "error")
    error: dict[str, Any] | None = json.loads(raw) if raw else None
    running = ("pending", "running", "waiting")
    ended = rt.state.ended_at(run_id)  # when it ended in Redis, not now that SQL catches up
    changed = False
    if redis_status == "succeeded":
        finish_run(rt, run_id, record.generation, rt.graph(run_id, record.generation), finished_at=ended)
    elif redis_status == "failed":
        sync_steps(rt, run_id)
        if rt.store.transition_run(run_id, running, "failed", error=error, finished_at=ended):
            close_failed(rt, run_id, error or {"message": "run failed"})
    elif redis_status == "cancelled":
        sync_steps(rt, run_id)
        if rt.store.transition_run(run_id, running, "cancelled", finished_at=ended):
            events.run_finished(rt, run_id, "cancelled")
            rt.state.notify_finished(run_id)
            rt.state.expire(run_id, rt.settings.finished_state_ttl)
    elif redis_status == "compensating":
        sync_steps(rt, run_id)
        changed = rt.store.transition_run(run_id, running, "compensating", error=error)
    elif redis_status in ("compensated", "compensation_failed"):
        states = rollback.comp_states(rt, run_id)
        sync_steps(rt, run_id)
        sync_compensations(rt, run_id, states)
        failed = sorted(u for u, st in states.items() if st == "compensation_failed")
        final_error = {**(error or {}), **({"compensation_failed": failed} if failed else {})}
        rt.store.transition_run(run_id, running, "compensating", error=error)
        closed = rt.store.transition_run(
            run_id, ("compensating",), redis_status, error=final_error or None, finished_at=ended
        )
        if closed:
            close_failed(rt, run_id, {"message": f"run {redis_status}"})
    after = rt.store.get_run(run_id, with_steps=False)
    changed = changed or (after is not None and after.status != record.status)
    if changed:
        log.warning("journal reconciled with Redis", run_id=run_id, status=redis_status, was=record.status)
    return changed


# -- stalled runs -------------------------------------------------------------------------------
def stalled_runs(rt: Runtime, seconds: float, limit: int = 1000) -> list[tuple[RunRecord, float]]:
    """Running or compensating runs that made no progress for ``seconds``, with how long they have
    been idle (a run ``waiting`` for a signal is not stalled)."""
    moving = [st for st in ACTIVE_SQL if st != "waiting"]
    ids = list(rt.store.runs_with_status(moving, limit))
    out = []
    for run_id in ids:
        idle = idle_seconds(rt, run_id)
        record = rt.store.get_run(run_id, with_steps=False)
        if record is not None and idle is not None and idle >= seconds:
            out.append((record, idle))
    return out


def recover(rt: Runtime) -> SweepReport:
    """Rebuild lost state and reconcile the journal for every active run, now."""
    report = SweepReport()
    for run_id in active_runs(rt):
        meta = rt.redis.hgetall(rt.state.key(run_id, "meta"))
        status = as_text(meta[b"status"]) if b"status" in meta else None
        if status is None or not has_state(rt, run_id):
            if rebuild_if_lost(rt, run_id, patient=False):
                report.rebuilt.append(run_id)
        elif status in ("running", "waiting"):
            gen = int(as_text(meta.get(b"gen", b"1")))
            if rebuild_if_stale(rt, run_id, gen, thorough=True, patient=False):
                report.rebuilt.append(run_id)
        elif reconcile(rt, run_id, status, patient=False):
            report.reconciled.append(run_id)
    return report
