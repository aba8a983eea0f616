"""How a finished run reads: steps that never ran are ``skipped``, and a rollback that undid
nothing does not claim to have compensated anything.

* :func:`skip_unrun` -- before a run's terminal status is journaled: each step the journal
  still has as ``pending`` (never dispatched, or queued and skipped at its claim) becomes
  ``skipped`` (``revoked`` when it was revoked), so a finished run has no ``pending`` step.
* :func:`rollback_status` -- the status a rollback ends in: ``compensation_failed`` when a
  compensation failed, ``compensated`` when at least one ran; when none ran (nothing that
  completed had anything to undo) the status of what started the rollback: ``failed`` for a
  step's failure or a deadline, ``cancelled`` for a cancel, ``compensated`` for an undo.
* :func:`parent_step` -- the step of the parent run that a child run's end completes (its
  result, advance.finish_run) or fails (failure.close_failed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# what started a rollback (the run's Redis meta field ``rollback``)
ROLLBACK_ORIGIN = "rollback"
_WHEN_NOTHING_UNDONE = {"failure": "failed", "cancel": "cancelled", "undo": "compensated"}
_RAN = frozenset({"succeeded", "failed", "partial", "running"})


def rollback_status(comp_states: Mapping[str, str], failed: list[str], origin: str | None) -> str:
    if failed:
        return "compensation_failed"
    if any(state == "compensated" for state in comp_states.values()):
        return "compensated"
    return _WHEN_NOTHING_UNDONE.get(origin or "failure", "failed")


def rollback_origin(rt: Any, run_id: str) -> str:
    raw = rt.redis.hget(rt.state.key(run_id, "meta"), ROLLBACK_ORIGIN)
    return (raw.decode() if isinstance(raw, bytes) else raw) or "failure"


def skip_unrun(rt: Any, run_id: str) -> None:
    """Journal every step that never ran as ``skipped`` (call after ``sync_steps``)."""
    record = rt.store.get_run(run_id)
    if record is None:
        return
    live = rt.state.step_states(run_id)
    rows: list[dict[str, Any]] = []
    for s in record.steps:
        state = live.get(s.step_id)
        if s.status in ("pending", "queued") and state not in _RAN:
            rows.append({"step_id": s.step_id, "status": "revoked" if state == "revoked" else "skipped"})
    if rows:
        rt.store.record_steps(run_id, rows, "step.skipped")


def parent_step(rt: Any, run_id: str) -> tuple[str, str, int] | None:
    """``(parent run, parent step, parent generation)`` when ``run_id`` is a child run.

    The run's hot state names its parent (its labels, written at start): most runs have none,
    and learn it without a query at the end of every run; the journal answers when that state
    has expired."""
    labels = rt.state.labels(run_id)
    if labels.get("workflow"):
        parent_run, step = labels.get("parent_run"), labels.get("parent_step")
    else:
        record = rt.store.get_run(run_id, with_steps=False)
        parent_run, step = (record.parent_run_id, record.parent_step) if record else (None, None)
    if not parent_run or not step:
        return None
    parent = rt.store.get_run(parent_run, with_steps=False)
    if parent is None:
        return None
    return parent.id, step, parent.generation
