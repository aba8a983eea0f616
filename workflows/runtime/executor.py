"""Run a step's delivery in the worker: claim, run the body, hand the result on.

The hot path of every step, in the worker that ran it:

1. claim the step in Redis (a duplicate of a completed step is recognised here: what its first
   delivery left undone is finished, :func:`canvasflow.workflows.runtime.advance.recover`);
2. run the task body (and, through fusion.py, the steps fused into this delivery);
3. complete it (advance.py): the first completion stores the result, releases and dispatches
   the successors, journals the step and finishes the run after its last step;
4. or, on failure, retry it, fall back, or fail it (failure.py).

The message is acknowledged after all of this (``acks_late``), so a worker killed at
any point gets the step redelivered and the claim tells the redelivery what is left.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from canvasflow.config.errors import StepCrashed, StepDeclined
from canvasflow.workers.routing.decisions import after_death
from canvasflow.workers.routing.live import observe
from canvasflow.workflows.runtime import control, events, fusion, special, wire
from canvasflow.workflows.runtime.advance import complete, recover
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.errors import error_info, traceback_text
from canvasflow.workflows.runtime.execution import ExecutionContext, executing, step_key
from canvasflow.workflows.runtime.wire import encode_result
from canvasflow.workflows.store.rows import now

log = structlog.get_logger("canvasflow.executor")
MEASURED = {"performance_based"}  # strategies that read the step durations of each engine


class Deferred:
    """Returned by a step body whose completion comes later (a sub-workflow's child run)."""


DEFERRED = Deferred()


# -- the worker side -------------------------------------------------------------------
def run_step(task: Task, ref: dict[str, Any], args: tuple, kwargs: dict) -> Any:
    """Execute one delivery of a step (called by StepTask.__call__), and the steps fused into it."""
    rt = runtime()
    problem = wire.header_problem(ref)
    if problem:
        wire.refuse(task, problem, ref, args, kwargs)
    with fusion.driving(rt, task, ref):
        return _run_step(rt, task, ref, args, kwargs)


def _run_step(rt: Runtime, task: Task, ref: dict[str, Any], args: tuple, kwargs: dict) -> Any:
    run_id, step_id, gen = ref["run"], ref["step"], int(ref["gen"])
    chunk = ref.get("chunk")
    claim_id = step_id if chunk is None else f"{step_id}#{chunk}"
    _check_target(rt, task, ref, args, kwargs)
    req = task.request
    info = {
        "worker": req.hostname,
        "queue": (req.delivery_info or {}).get("routing_key"),
        "task_id": req.id,
        "pid": os.getpid(),
        "started_at": now().isoformat(),
        "gen": gen,
    }
    fused_into = fusion.fused_delivery()
    if fused_into:  # run by another step's delivery: the heartbeat shows that one held
        info.update(delivery=fused_into, fused=True)
    if "route" in ref:
        info["route"] = ref["route"]
        implementation = getattr(task, "implementation_of", None)  # an action: its engine's handler
        if implementation is not None:
            info["route"] = {**ref["route"], "implementation": implementation(args)}
    with structlog.contextvars.bound_contextvars(run_id=run_id, step_id=claim_id):
        claim = rt.state.claim(run_id, claim_id, gen, info)
        if claim.outcome == "done" or claim.run_status == "stale":  # rare paths: worth a read
            _check_generation(rt, task, ref, args, kwargs)
        if claim.outcome == "skip":
            log.info("step skipped", reason=claim.run_status)
            if claim.run_status == "compensating":
                control.step_settled(rt, run_id)
            raise Ignore()
        if claim.outcome == "done":
            log.info("duplicate delivery of a completed step")
            if chunk is None:
                recover(rt, run_id, step_id, gen, delivery=req.id)
            return None
        info["attempt"] = claim.attempt
        if claim.previous:  # an earlier delivery died mid-step: its attempt is journaled too
            previous = json.loads(claim.previous)
            _journal_abandoned(rt, run_id, claim_id, previous, claim.attempt - 1)
            info["crashes"] = crashed = int(previous.get("crashes", 0)) + 1  # in a row: a retry resets it
            if "route" in info:
                info["route"] = after_death(info["route"], previous, claim.attempt - 1)
            rt.redis.hset(rt.state.key(run_id, "info"), claim_id, json.dumps(info))
            if crashed >= rt.settings.step_max_crashes:
                raise _crashed(run_id, claim_id, task.name, previous, crashed)
        if claim.run_status == "compensating":
            log.warning("step redelivered during the rollback: running it to completion to compensate it")
        ctx = ExecutionContext(
            run_id,
            claim_id,
            gen,
            claim.attempt,
            step_key(run_id, claim_id, gen),
            info["queue"],
            info["worker"],
            _rt=rt,
            task=task.name,
        )
        delivery = events.Delivery(
            run_id, claim_id, task, gen, claim.attempt, info, getattr(req, events.CARRIER_HEADER, None)
        )
        events.step_started(delivery)
        began = time.perf_counter()
        try:
            with executing(ctx):
                result = task.run(*args, **kwargs)
            took = time.perf_counter() - began
            info["finished_at"] = now().isoformat()
            encoded = "null" if result is DEFERRED else encode_result(claim_id, result)
        except Retry as retry:
            rt.state.mark_retrying(run_id, claim_id)
            _journal_retry(rt, delivery, retry)
            events.step_retried(delivery, began, retry)
            raise
        except (Ignore, Reject) as exc:
            if isinstance(exc, Reject) and exc.requeue:
                raise  # the broker delivers the message again: the step runs again
            raise _declined(run_id, claim_id, task.name, exc) from None
        except Exception as exc:
            partial = getattr(exc, "canvasflow_partial", None)
            if chunk is not None and partial:
                rt.state.chunk_partial(run_id, step_id, int(chunk), json.dumps(partial))
            if getattr(task, "on_failure_policy", "compensate") != "continue":
                raise  # the link_error errback journals it (failure.fail_step), once
            result = _fallback(rt, task, run_id, claim_id, exc, info)
            encoded = encode_result(claim_id, result)
            took = time.perf_counter() - began
        if result is DEFERRED:
            rt.store.record_step(
                run_id, step_id, "step.waiting", status="waiting", **_delivery(info, claim.attempt)
            )
            return None
        if "route" in ref and ref["route"]["strategy"] in MEASURED:
            _observe(rt, ref["route"], info)
        announce = events.success_announcer(delivery, took)
        if chunk is None:
            complete(rt, run_id, step_id, gen, result, encoded, info, stored=announce)
            return result
        mapped = special.chunk_completed(rt, run_id, step_id, int(chunk), result, encoded, info, announce)
        if mapped is not None:  # the last chunk: the map step completes with every item's value
            complete(rt, run_id, step_id, gen, mapped.value, encode_result(step_id, mapped.value), None)
        return result


def _declined(run_id: str, step_id: str, task: str, exc: Ignore | Reject) -> StepDeclined:
    """What a step body that raised Ignore or Reject (no requeue) fails with: it neither returned
    nor failed, and no message of it is left (Celery acks an ignored one, the broker drops a
    rejected one), so the sweep would send it again, to decline again, for ever."""
    what = "Reject without requeue" if isinstance(exc, Reject) else "Ignore (self.replace raises it too)"
    return StepDeclined(
        f"step {step_id} of run {run_id} (task {task!r}) raised Celery's {what}: a step ends by "
        "returning its result or raising an error (start a sub-workflow for more steps); the step "
        f"failed and the run rolls back: change the step, then `canvasflow resume {run_id}`"
    )


def _crashed(run_id: str, step_id: str, task: str, previous: dict[str, Any], crashed: int) -> StepCrashed:
    """What a step fails with when ``crashed`` deliveries in a row died running it: Celery would
    deliver it again for ever (``task_reject_on_worker_lost``) when the step kills its process."""
    where = f"the last on {previous.get('worker')}, process {previous.get('pid')}"
    return StepCrashed(
        f"step {step_id} of run {run_id} (task {task!r}): {crashed} deliveries in a row died running it "
        f"({where}): the step kills its process (a crash, os._exit, the OOM killer?); it was not run "
        f"again, it failed and the run rolls back: fix the step (or raise CANVASFLOW_STEP_MAX_CRASHES), "
        f"then `canvasflow resume {run_id}`"
    )


def _journal_retry(rt: Runtime, delivery: events.Delivery, retry: Retry) -> None:
    """An attempt that will be retried: an event only (the step's row keeps its state)."""
    exc = retry.exc if isinstance(retry.exc, BaseException) else retry
    info = delivery.info
    data = {
        "generation": delivery.generation,
        "attempts": delivery.attempt,
        "worker": info.get("worker"),
        "queue": info.get("queue"),
        "started_at": info.get("started_at"),
        "finished_at": now().isoformat(),
        "error": {**error_info(exc, delivery.task), "traceback": traceback_text(exc)},
    }
    rt.journal.record_step(delivery.run_id, delivery.unit, "step.retrying", event_data=data)


def _journal_abandoned(rt: Runtime, run_id: str, unit: str, previous: dict[str, Any], attempt: int) -> None:
    """The attempt a delivery claimed and never finished (its worker died): an event only."""
    data = {
        "generation": previous.get("gen"),
        "attempts": attempt,
        "worker": previous.get("worker"),
        "queue": previous.get("queue"),
        "started_at": previous.get("started_at"),
        "error": {"type": "WorkerLost", "message": "its worker died before the step finished"},
    }
    rt.journal.record_step(run_id, unit, "step.abandoned", event_data=data)


def _current_generation(rt: Runtime, run_id: str) -> int | None:
    gen = rt.state.labels(run_id).get("gen")
    if gen is not None:
        return int(gen)
    record = rt.store.get_run(run_id, with_steps=False)
    return None if record is None else record.generation


def _check_target(rt: Runtime, task: Task, ref: dict[str, Any], args: Any, kwargs: Any) -> None:
    """Dead-letter a step message for an unknown run or a step id not in the run's graph."""
    try:
        graph = rt.graph(ref["run"], int(ref["gen"]))
    except KeyError:
        wire.refuse(task, f"unknown run id {ref['run']!r}", ref, args, kwargs)
    if ref["step"] not in graph.steps and _current_generation(rt, ref["run"]) == int(ref["gen"]):
        wire.refuse(task, f"step {ref['step']!r} is not in run {ref['run']}'s graph", ref, args, kwargs)


def _check_generation(rt: Runtime, task: Task, ref: dict[str, Any], args: Any, kwargs: Any) -> None:
    """A stale claim of a generation the run has not reached: a forged or corrupt message."""
    current = _current_generation(rt, ref["run"])
    if current is not None and int(ref["gen"]) > current:
        reason = f"generation {ref['gen']} of run {ref['run']} is from the future (current {current})"
        wire.refuse(task, reason, ref, args, kwargs)


def _observe(rt: Runtime, route: dict[str, Any], info: dict[str, Any]) -> None:
    """Feed a routed step's duration to its engine's EWMA (performance_based reads it)."""
    took = datetime.fromisoformat(info["finished_at"]) - datetime.fromisoformat(info["started_at"])
    observe(rt.redis, rt.settings.key_prefix, route["engine"], took.total_seconds())


def _delivery(info: dict[str, Any], attempt: int) -> dict[str, Any]:
    """Journal fields of the delivery that ran a step."""
    return {
        "attempts": attempt,
        "worker": info["worker"],
        "queue": info["queue"],
        "task_id": info["task_id"],
        "started_at": datetime.fromisoformat(info["started_at"]),
        "route": info.get("route"),
    }


def _fallback(
    rt: Runtime, task: Task, run_id: str, step_id: str, exc: BaseException, info: dict[str, Any]
) -> Any:
    """The ``continue`` policy: the step completes with its fallback value; nothing to undo."""
    log.warning("step failed; continuing with its fallback", error=str(exc))
    info["finished_at"] = now().isoformat()
    info["error"] = {**error_info(exc, task), "fallback": True}
    control.step_fallback(rt, run_id, step_id)
    return getattr(task, "fallback", None)
