"""The compensation task's side of a rollback: one delivery of a compensation message.

At least once: a delivery claims its unit (compensation.claims) and holds a lease
(compensation.leases) while the body runs, with the unit's idempotency key in
``context()``. A redelivery after a crash finds the lease gone and runs the body again; a
duplicate that finds the lease held is deferred; a delivery that finds the unit finished
only moves the rollback on. ``@compensates(..., at_most_once=True)`` records an interrupted
compensation instead of running it again.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Retry

from canvasflow.compensation.claims import CompClaim
from canvasflow.compensation.header import COMP_HEADER
from canvasflow.compensation.leases import holder_dead, holder_id
from canvasflow.compensation.rollback import comp_key, finish_unit, progress, rollback_tools
from canvasflow.workflows.runtime import events
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.errors import traceback_text
from canvasflow.workflows.runtime.execution import ExecutionContext, executing, undo_key

log = structlog.get_logger("canvasflow.compensation")


def run_compensation(task: Task, ref: dict[str, Any], args: tuple, kwargs: dict) -> Any:
    """One delivery of a compensation: at least once per unit, journaled, then progress.

    A delivery claims the unit (see compensation.claims) and holds a lease while the body
    runs. A redelivery after a crash finds the lease gone and runs the body again with the
    same idempotency key; a duplicate that finds the lease held is deferred; a delivery that
    finds the unit finished only moves the rollback on."""
    rt = runtime()
    run_id, unit, gen = ref["run"], ref["unit"], int(ref["gen"])
    req = task.request
    with structlog.contextvars.bound_contextvars(run_id=run_id, step_id=unit, compensation=task.name):
        me = holder_id(req.hostname)
        claim = _claim(
            rt, run_id, unit, ref, req.retries or 0, me, bool(getattr(task, "at_most_once", False))
        )
        if claim.kind == "finished":
            progress(rt, run_id, gen)  # the first delivery may have died before moving it on
            return None
        if claim.kind == "held":
            log.info("compensation already running elsewhere; deferred", holder=claim.detail)
            _defer(rt, task, ref, args, kwargs)
            return None
        if claim.kind in ("once", "exhausted"):
            finish_unit(rt, run_id, unit, gen, "compensation_failed", error=_interrupted(claim))
            return None
        if claim.kind == "interrupted":
            log.warning("compensation interrupted by a crash; running it again", deliveries=claim.detail)
        ctx = ExecutionContext(
            run_id,
            unit,
            gen,
            int(claim.detail),
            undo_key(run_id, unit),
            (req.delivery_info or {}).get("routing_key"),
            req.hostname,
            compensation=True,
            _rt=rt,
            task=task.name,
        )
        said = partial(
            events.compensation,
            run_id=run_id,
            unit=unit,
            task=task.name,
            attempt=(req.retries or 0) + 1,
            key=ctx.idempotency_key,
            worker=req.hostname,
        )
        fence = (claim_field(unit, ref), me)  # a late result of a holder taken over is refused
        said("on_compensation_start")
        began = time.perf_counter()
        with rollback_tools(rt).leases.hold(rt.state.key(run_id, f"complease:{unit}"), me):
            try:
                with executing(ctx):
                    out = task.run(*args, **kwargs)
            except Retry as retry:  # its retry message is on the broker already: not stranded
                rt.redis.hset(comp_key(rt, run_id), unit, "retrying")
                rt.journal.record_step(run_id, unit, "compensation.retry")
                said("on_compensation_failure", duration=time.perf_counter() - began, error=_error(retry.exc))
                raise
            except Exception as exc:
                error = {**_error(exc), "attempts": (req.retries or 0) + 1}
                said("on_compensation_failure", duration=time.perf_counter() - began, error=error)
                finish_unit(rt, run_id, unit, gen, "compensation_failed", error=error, fence=fence)
                raise
            # inside the lease: a unit running without one is taken for interrupted
            said("on_compensation_success", duration=time.perf_counter() - began)
            finish_unit(rt, run_id, unit, gen, "compensated", fence=fence)
        return out


def _error(exc: BaseException | None) -> dict[str, Any]:
    """A compensation's error: type, message and traceback."""
    if exc is None:
        return {"type": "Retry", "message": "retried"}
    return {"type": type(exc).__name__, "message": str(exc), "traceback": traceback_text(exc)}


def _claim(
    rt: Runtime, run_id: str, unit: str, ref: dict[str, Any], retries: int, me: str, at_most_once: bool
) -> CompClaim:
    s = rt.settings
    fields: dict[str, Any] = {
        "claim_key": rt.state.key(run_id, "compclaim"),
        "lease_key": rt.state.key(run_id, f"complease:{unit}"),
        "comp_key": comp_key(rt, run_id),
        "field": claim_field(unit, ref),
        "unit": unit,
        "retries": retries,
        "holder": me,
        "lease_ms": int(s.compensation_lease_ttl * 1000),
        "at_most_once": at_most_once,
        "max_deliveries": s.compensation_max_deliveries,
    }
    claim = rollback_tools(rt).claims.claim(**fields)
    if claim.kind == "held" and holder_dead(claim.detail):  # on this machine, gone: no need to wait
        claim = rollback_tools(rt).claims.claim(**fields, dead_holder=claim.detail)
    return claim


def claim_field(unit: str, ref: dict[str, Any]) -> str:
    """The unit's claim record for this round of the rollback."""
    return f"{unit}:{ref.get('round', 1)}"


def _interrupted(claim: CompClaim) -> dict[str, Any]:
    if claim.kind == "once":
        why = "it is at_most_once, so it was not run again"
    else:
        why = f"it was interrupted {int(claim.detail) - 1} times"
    return {
        "type": "Interrupted",
        "retryable": True,
        "message": f"the compensation was interrupted by a crash and may not have finished; {why}: "
        "check its effect, then `canvasflow compensate RUN`",
    }


def _defer(rt: Runtime, task: Task, ref: dict[str, Any], args: tuple, kwargs: dict) -> None:
    """Publish this delivery again for later: the holder finishes it or its lease expires."""
    req = task.request
    rt.app.send_task(
        task.name,
        args=list(args),
        kwargs=kwargs,
        task_id=req.id,
        headers={COMP_HEADER: ref},
        queue=(req.delivery_info or {}).get("routing_key"),
        countdown=max(rt.settings.compensation_lease_ttl / 2, 1.0),
        priority=(req.delivery_info or {}).get("priority"),
        retries=req.retries or 0,
        ignore_result=True,
        add_to_parent=False,
    )
