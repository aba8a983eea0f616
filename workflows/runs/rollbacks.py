"""Rolling a run back on request: cancel (optionally compensating), undo, compensate.

Each checks the run's state first and changes nothing when it refuses (``RunStateError``
saying what to do). The rollback itself is the one a failure starts
(``compensation/rollback.py``); what started it is kept in the run's Redis meta
(``rollback``), so a rollback that undid nothing ends ``cancelled`` after a cancel.
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from canvasflow.compensation import rollback
from canvasflow.config.errors import RunStateError
from canvasflow.workflows.runs.records import get_record, run_labels
from canvasflow.workflows.runtime import events
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.journal import sync_steps
from canvasflow.workflows.runtime.outcome import ROLLBACK_ORIGIN, skip_unrun
from canvasflow.workflows.store.records import TERMINAL, RunRecord

log = structlog.get_logger("canvasflow.lifecycle")


def cancel(run_id: str, *, compensate: bool = False) -> RunRecord:
    """Stop dispatching: queued steps are skipped at their claim.

    Without ``compensate`` running steps finish (their effects stay; ``undo`` or
    ``compensate`` of the cancelled run rolls them back later). With it the run rolls back
    at once: running steps are waited for (``inflight="wait"``) or revoked
    (``inflight="revoke"``), and every step that completed, including one that finishes
    after the cancel, is compensated; the run ends ``compensated`` (``cancelled`` when
    nothing was undone, ``compensation_failed`` when an undo kept failing).
    """
    rt = runtime()
    record = get_record(run_id)
    if record.status in TERMINAL or record.status == "compensating":
        raise RunStateError(
            f"run {run_id} is already {record.status}; nothing to cancel"
            + (" (`canvasflow undo` rolls a cancelled run back)" if record.status == "cancelled" else "")
        )
    active = ("pending", "running", "waiting")
    if compensate:
        _mark_rollback(rt, run_id, "cancel", CANCELLED)
        if not rt.state.transition(run_id, active, "compensating"):
            raise RunStateError(f"run {run_id} changed state while cancelling; look at it again")
        sync_steps(rt, run_id)
        rt.store.transition_run(run_id, active, "compensating", error=CANCELLED)
        log.info("run cancelled; rolling back", run_id=run_id)
        rollback.begin(rt, run_id, record.generation)
    else:
        rt.state.transition(run_id, active, "cancelled")
        sync_steps(rt, run_id)
        skip_unrun(rt, run_id)
        if not rt.store.transition_run(run_id, active, "cancelled", error=CANCELLED):
            raise RunStateError(f"run {run_id} changed state while cancelling; look at it again")
        events.run_finished(rt, run_id, "cancelled", CANCELLED)
        rt.state.notify_finished(run_id)
        rt.state.expire(run_id, rt.settings.finished_state_ttl)
    for child in rt.store.children(run_id):
        if child.status not in TERMINAL and child.status != "compensating":
            cancel(child.id, compensate=compensate)
    return get_record(run_id)


CANCELLED = {"type": "Cancelled", "message": "cancelled on request", "retryable": False}


def _mark_rollback(rt: Runtime, run_id: str, origin: str, error: dict[str, Any] | None = None) -> None:
    """Record what starts a rollback (its final status when it undoes nothing) and why."""
    fields = {ROLLBACK_ORIGIN: origin}
    if error is not None:
        fields["error"] = json.dumps(error)
    rt.redis.hset(rt.state.key(run_id, "meta"), mapping=fields)  # type: ignore[arg-type]


def rehydrate(rt: Runtime, record: RunRecord) -> None:
    """Rebuild a run's Redis state from the journal (it may have expired since the run ended)."""
    if rt.state.graph_json(record.id) is not None:
        return
    completed = {s.step_id: json.dumps(s.result) for s in record.steps if s.status == "succeeded"}
    rt.state.init_run(
        record.id,
        generation=record.generation,
        graph_json=json.dumps(record.graph),
        pending={},
        completed=completed,
        left=0,
        status=record.status,
        labels=run_labels(record.workflow, record.version, record.parent_run_id, record.parent_step),
    )


def undo(run_id: str) -> RunRecord:
    """Compensate every completed step of a succeeded or cancelled run, in reverse dependency order."""
    rt = runtime()
    record = get_record(run_id)
    if record.status not in ("succeeded", "cancelled"):
        raise RunStateError(
            f"run {run_id} is {record.status}; only a succeeded or cancelled run can be undone"
            + (
                " (`canvasflow compensate` retries failed compensations)"
                if record.status == "compensation_failed"
                else ""
            )
        )
    _roll_back_finished(rt, record, "undo")
    return get_record(run_id)


def _roll_back_finished(rt: Runtime, record: RunRecord, why: str) -> None:
    """Start the rollback of a succeeded or cancelled run (steps still running when it was
    cancelled are waited for and compensated when they complete)."""
    run_id = record.id
    rehydrate(rt, record)
    if not rt.store.transition_run(run_id, (record.status,), "compensating", finished_at=None):
        raise RunStateError(f"run {run_id} changed state while rolling back; look at it again")
    if record.status == "cancelled":
        _mark_rollback(rt, run_id, "cancel", record.error or CANCELLED)
    else:
        _mark_rollback(rt, run_id, "undo")
    rt.state.transition(run_id, (record.status,), "compensating")
    log.info("rollback requested", run_id=run_id, by=why, was=record.status)
    rollback.begin(rt, run_id, record.generation)


def retry_compensation(run_id: str) -> RunRecord:
    """Run again the compensations that failed after their retries (``compensation_failed`` runs);
    of a cancelled run, compensate every step that completed (as ``undo``)."""
    rt = runtime()
    record = get_record(run_id)
    if record.status == "cancelled":
        _roll_back_finished(rt, record, "compensate")
        return get_record(run_id)
    if record.status != "compensation_failed":
        raise RunStateError(
            f"run {run_id} is {record.status}; only a compensation_failed run has compensations to "
            "retry (and a cancelled one, completed steps to compensate)"
        )
    rehydrate(rt, record)
    failed = [s.step_id for s in record.steps if s.compensation_status == "compensation_failed"]
    if not rt.store.transition_run(run_id, ("compensation_failed",), "compensating", finished_at=None):
        raise RunStateError(f"run {run_id} changed state while retrying; look at it again")
    rt.state.transition(run_id, ("compensation_failed",), "compensating")
    if failed:
        rt.redis.hdel(rt.state.key(run_id, "comp"), *failed)
        rt.store.record_steps(
            run_id,
            [{"step_id": u, "compensation_status": None, "compensation_error": None} for u in failed],
            "compensation.reset",
        )
    rollback.progress(rt, run_id, record.generation)
    return get_record(run_id)
