"""What happens when a step fails after its retries (called from the link_error errback).

1. The step is journaled as failed; the run moves from active to its failure status
   atomically, so a second failure, a duplicate errback or a racing sibling changes nothing.
2. Every author errback whose scope holds the step runs once (a Redis SETNX per errback),
   called the way Celery calls errbacks: ``(request, exc, traceback)`` in this process when
   the task takes them, else published with the failed task id.
3. The winner of the transition starts the rollback (compensation) or closes the run.

A step no worker will run fails the same way: one whose task the receiving worker does not have
(:func:`fail_unregistered`, from Celery's ``task_unknown`` signal), one whose message expired or
was revoked from outside canvasflow while its run was running (:func:`fail_revoked`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

import redis
import structlog
from celery.utils.functional import arity_greater
from sqlalchemy.exc import SQLAlchemyError

from canvasflow.config.errors import StepRevoked, TaskNotRegistered
from canvasflow.workflows.runtime import control, events
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.errors import TRACEBACK_LIMIT, error_info
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.journal import sync_steps
from canvasflow.workflows.runtime.outcome import parent_step, skip_unrun
from canvasflow.workflows.runtime.reroute import reroute
from canvasflow.workflows.runtime.state import as_text
from canvasflow.workflows.runtime.wire import HEADER, header_problem

log = structlog.get_logger("canvasflow.failure")


def failure_status(graph: StepGraph) -> str:
    """``compensating`` when any step has a compensation to run, else ``failed``."""
    return "compensating" if any(n.compensation for n in graph.steps.values()) else "failed"


def step_ref(request: Any) -> dict[str, Any] | None:
    """The canvasflow header of a task request (a Celery Context), if it is a step's."""
    ref = request.get(HEADER) if hasattr(request, "get") else None
    return ref or (getattr(request, "headers", None) or {}).get(HEADER)


def step_failed(request: Any, exc: BaseException, traceback: Any) -> None:
    """Handle the final failure of a canvasflow step; other tasks are ignored."""
    ref = step_ref(request)
    if not ref:
        return
    rt = runtime()
    # an engine-level error goes to the next engine first (docs/routing.md)
    if "route" in ref and reroute(rt, ref, exc, getattr(request, "hostname", None)):
        return
    fail_step(
        rt,
        ref["run"],
        ref["step"],
        int(ref["gen"]),
        ref.get("chunk"),
        exc,
        request=request,
        traceback=traceback,
    )


def fail_unregistered(ref: Any, task: str | None, hostname: str | None) -> None:
    """A worker received step ``ref`` of task ``task`` without having the task (Celery discards
    such a message): fail the step, naming the task and the worker, instead of leaving it to the
    sweep, which would publish it again to the same workers for ever."""
    if header_problem(ref) is not None:
        return  # not a step's message: the dead letter is all there is to say
    fail_unrun(
        ref,
        TaskNotRegistered(
            f"worker {hostname} received step {ref['step']} of task {task!r} but has no such task: "
            f"import its module in the workers of that queue (CANVASFLOW_WORKFLOW_MODULES or the -A "
            f"app), then `canvasflow resume {ref['run']}`"
        ),
    )


def fail_revoked(ref: Any, task: str | None, *, expired: bool) -> None:
    """Step ``ref`` of a running run was revoked from outside canvasflow, or its message expired
    (Celery's ``expires``), before it ran: the run cannot go on without it, so it fails."""
    why = "its message expired (Celery's expires) before a worker took it" if expired else "it was revoked"
    fail_unrun(
        ref,
        StepRevoked(
            f"step {ref['step']} ({task}) did not run: {why}; give it a longer expires (or none) "
            f"and `canvasflow resume {ref['run']}`"
        ),
    )


def fail_unrun(ref: dict[str, Any], exc: BaseException) -> None:
    """Fail a step that no worker will run, with ``exc`` saying why (the run rolls back)."""
    try:
        fail_step(runtime(), ref["run"], ref["step"], int(ref["gen"]), ref.get("chunk"), exc)
    except (redis.RedisError, SQLAlchemyError, OSError) as down:  # the sweep sends it again later
        log.warning("step not failed: state or journal unreachable", error=str(down), **ref)


def fail_step(
    rt: Runtime,
    run_id: str,
    step_id: str,
    gen: int,
    chunk: int | None,
    exc: BaseException,
    *,
    request: Any = None,
    traceback: Any = None,
) -> None:
    unit = step_id if chunk is None else f"{step_id}#{chunk}"
    if as_text(rt.redis.hget(rt.state.key(run_id, "st"), step_id) or b"") == "succeeded":
        # another delivery completed the step (this one was cut off and is back late): its
        # failure changes nothing, as its late success would not (state.fail refuses it too)
        log.warning(
            "late failure refused: the step completed in another delivery", run_id=run_id, step_id=unit
        )
        return
    graph = rt.graph(run_id, gen)
    task = rt.app.tasks.get(getattr(request, "task", None) or "")
    error = {**error_info(exc, task), "step": unit}
    step_error = {**error, "traceback": str(traceback)[-TRACEBACK_LIMIT:]} if traceback else error
    with structlog.contextvars.bound_contextvars(run_id=run_id, step_id=unit):
        log.warning("step failed", error_type=error["type"], error=error["message"])
        target = failure_status(graph)
        won = chunk is not None and rt.state.fail(run_id, unit, target)
        won = rt.state.fail(run_id, step_id, target) or won
        fields, meta = _failed_fields(rt, run_id, unit, step_error)
        rt.journal.record_step(run_id, unit, "step.failed", **fields)
        carrier = getattr(request, events.CARRIER_HEADER, None) if request is not None else None
        attempt = int(meta.get("attempt") or 1)
        delivery = events.Delivery(
            run_id, unit, task or graph.steps[step_id].task, gen, attempt, meta, carrier
        )
        events.step_failed(rt, delivery, step_error)
        if chunk is not None:
            rt.journal.record_step(run_id, step_id, "step.failed", status="failed", error=step_error)
        _call_errbacks(rt, run_id, graph, step_id, request, exc, traceback)
        if not won:
            control.step_settled(rt, run_id)
            return
        # Redis decided; the journal follows (a racing sibling's rollback may close it first)
        rt.redis.hset(rt.state.key(run_id, "meta"), "error", json.dumps(error))
        try:
            sync_steps(rt, run_id)
            if target == "failed":
                skip_unrun(rt, run_id)
            rt.store.transition_run(run_id, ("running", "waiting"), target, error=error)
        except (SQLAlchemyError, OSError) as exc:  # the rollback goes on; the sweep reconciles SQL
            log.warning("journal unreachable; the run's status is written when it is back", error=str(exc))
        if target == "compensating":
            control.rollback_needed(rt, run_id, gen)
        else:
            close_failed(rt, run_id, error)


def _failed_fields(
    rt: Runtime, run_id: str, unit: str, error: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The journal fields of a failed step (its last delivery, from its claim, and the error),
    and that claim's info."""
    meta = rt.state.step_info(run_id).get(unit, {})
    finished = datetime.now(UTC)
    fields: dict[str, Any] = {"status": "failed", "finished_at": finished, "error": error}
    # in Redis too: a terminal sync (sync_steps) writes it from there when this process's
    # journal queue has not reached the database yet (it may be down, or this process gone)
    meta.update(error=error, finished_at=finished.isoformat())
    rt.redis.hset(rt.state.key(run_id, "info"), unit, json.dumps(meta))
    attempts = rt.state.attempts(run_id).get(unit)
    if attempts:
        fields["attempts"] = attempts
    if meta.get("gen"):
        fields["event_data"] = {"generation": meta["gen"]}
    if meta.get("delivery"):  # a fused or carried step: the message it ran in
        fields.setdefault("event_data", {})["delivery"] = meta["delivery"]
    for key in ("worker", "queue", "task_id", "route"):
        if meta.get(key):
            fields[key] = meta[key]
    if meta.get("started_at"):
        fields["started_at"] = datetime.fromisoformat(meta["started_at"])
    return fields, meta


def close_failed(rt: Runtime, run_id: str, error: dict[str, Any]) -> None:
    """The run ended failed (or after its rollback): wake waiters and fail the parent step of a
    child run."""
    events.run_finished(rt, run_id, error=error if error.get("type") else None)
    rt.state.notify_finished(run_id)
    rt.state.expire(run_id, rt.settings.finished_state_ttl)
    parent = parent_step(rt, run_id)
    if parent is not None:  # a child run: its failure fails the parent's step
        parent_id, step_id, parent_gen = parent
        child_error = RuntimeError(f"child run {run_id} failed: {error.get('message')}")
        fail_step(rt, parent_id, step_id, parent_gen, None, child_error)


def _call_errbacks(
    rt: Runtime, run_id: str, graph: StepGraph, step_id: str, request: Any, exc: BaseException, traceback: Any
) -> None:
    for index, eb in enumerate(graph.errbacks):
        if step_id not in eb.scope:
            continue
        if not rt.redis.set(
            rt.state.key(run_id, f"errback:{index}"), step_id, nx=True, ex=rt.settings.result_expires
        ):
            continue
        _call_like_celery(rt, eb.signature, request, exc, traceback)


def _call_like_celery(
    rt: Runtime, signature: dict[str, Any], request: Any, exc: BaseException, traceback: Any
) -> None:
    sig = rt.app.signature(signature)
    task = rt.app.tasks.get(sig.task)
    header = getattr(task, "__header__", None)
    new_style = (
        task is not None
        and header is not None
        and not isinstance(header, partial)
        and arity_greater(header, 1)
        and request is not None
    )
    try:
        if new_style:
            sig(request, exc, traceback)
        else:
            task_id = getattr(request, "id", None)
            sig.apply_async((task_id,), add_to_parent=False)
    except Exception:
        log.exception("errback raised", errback=sig.task)
