"""Run steps and move runs forward: claim, run, complete, dispatch the ready successors.

The hot path of every step, in the worker that ran it:

1. claim the step in Redis (a duplicate of a completed step is recognised here);
2. run the task body;
3. complete it atomically: the first completion stores the result and releases
   successors whose joins reached zero;
4. publish those successors (their arguments resolved from journaled results);
5. write the step to the SQL journal; if it was the last step, finish the run.

The message is acknowledged after all of this (``acks_late``), so a worker killed at
any point gets the step redelivered and the claim tells the redelivery what is left.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Ignore, Retry
from sqlalchemy.exc import SQLAlchemyError

from canvasflow.workers.routing.decisions import after_death
from canvasflow.workers.routing.live import observe
from canvasflow.workflows.runtime import bundles, control, deadlines, events, fusion, sending, special, wire
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.errors import error_info, traceback_text
from canvasflow.workflows.runtime.execution import ExecutionContext, executing, step_key
from canvasflow.workflows.runtime.graph import StepGraph, refs_in, resolve
from canvasflow.workflows.runtime.journal import sync_steps
from canvasflow.workflows.runtime.outcome import parent_step
from canvasflow.workflows.runtime.state import ACTIVE, Completion
from canvasflow.workflows.runtime.wire import encode_result

log = structlog.get_logger("canvasflow.executor")
MEASURED = {"performance_based"}  # strategies that read the step durations of each engine


class Deferred:
    """Returned by a step body whose completion comes later (a sub-workflow's child run)."""


DEFERRED = Deferred()


def _now() -> datetime:
    return datetime.now(UTC)


# -- dispatch ------------------------------------------------------------------------
def dispatch(
    rt: Runtime,
    run_id: str,
    generation: int,
    graph: StepGraph,
    step_ids: list[str],
    known: dict[str, Any] | None = None,
    *,
    bundle: bool = True,
) -> None:
    """Publish each ready step, with its arguments resolved from the journaled results.

    A wide fan-out of plain steps for one queue travels as fewer messages, each carrying a few
    siblings for its worker to run after it (bundles.py); ``bundle=False`` publishes one each.
    A map or signal step that is done at once (special.py) is completed here."""
    if not step_ids:
        return
    then = bundles.plan(rt, graph, step_ids) if bundle else {}
    carried = {sid for rest in then.values() for sid in rest}
    step_ids = [sid for sid in step_ids if sid not in carried]
    results = sending.results_for(rt, run_id, [graph.steps[sid] for sid in step_ids], known)
    plain = [sid for sid in step_ids if graph.steps[sid].kind in ("task", "workflow")]
    sending.send_ready(rt, run_id, generation, graph, plain, results, then)
    for sid in step_ids:
        node = graph.steps[sid]
        if node.kind in ("task", "workflow"):
            continue
        args, kwargs = sending.arguments(rt, run_id, node, results)
        done = special.dispatch(rt, run_id, generation, node, args, kwargs)
        if done is not None:
            complete(rt, run_id, sid, generation, done.value, encode_result(sid, done.value), None)
    if graph.options.get("deadlines"):
        deadlines.after_dispatch(rt, run_id, generation, graph, step_ids)


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
        "started_at": _now().isoformat(),
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
            _journal_abandoned(rt, run_id, claim_id, json.loads(claim.previous), claim.attempt - 1)
            if "route" in info:
                info["route"] = after_death(info["route"], json.loads(claim.previous), claim.attempt - 1)
                rt.redis.hset(rt.state.key(run_id, "info"), claim_id, json.dumps(info))
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
            info["finished_at"] = _now().isoformat()
            encoded = "null" if result is DEFERRED else encode_result(claim_id, result)
        except Retry as retry:
            rt.state.mark_retrying(run_id, claim_id)
            _journal_retry(rt, delivery, retry)
            events.step_retried(delivery, began, retry)
            raise
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
        "finished_at": _now().isoformat(),
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
    info["finished_at"] = _now().isoformat()
    info["error"] = {**error_info(exc, task), "fallback": True}
    control.step_fallback(rt, run_id, step_id)
    return getattr(task, "fallback", None)


def complete(
    rt: Runtime,
    run_id: str,
    step_id: str,
    gen: int,
    result: Any,
    encoded: str,
    info: dict[str, Any] | None,
    *,
    stored: Callable[[], None] | None = None,
) -> None:
    """Journal a step's result and move the run forward; a second completion changes nothing.

    ``stored`` is called once the first completion is stored, before successors are dispatched."""
    graph = rt.graph(run_id, gen)
    if info is None:  # completed without a task of its own: a map join, a signal, a child run
        info = {"finished_at": _now().isoformat(), "gen": gen}
        node = graph.steps.get(step_id)
        if node is not None and "routing" in node.options:  # a workflow engine ran it: keep the route
            claimed = rt.redis.hget(rt.state.key(run_id, "info"), step_id)
            route = json.loads(claimed).get("route") if claimed else None
            if route:
                info["route"] = route
    done = rt.state.complete(
        run_id, step_id, encoded, graph.successors(step_id), json.dumps(info) if info else ""
    )
    _completed(rt, run_id, step_id, gen, graph, result, encoded, info, done, stored)


def complete_many(rt: Runtime, items: list[tuple[str, str, int, Any, str, dict[str, Any]]]) -> None:
    """:func:`complete` of many ``(run, step, generation, result, encoded, info)`` at once, their
    state scripts in one round trip (the timer service wakes many sleep steps together). One
    that fails is logged and the others go on: its successors, released but not published,
    are found by the sweep."""
    graphs = [rt.graph(run_id, gen) for run_id, _, gen, _, _, _ in items]
    scripts = [
        (r, s, enc, g.successors(s), json.dumps(info))
        for (r, s, _, _, enc, info), g in zip(items, graphs, strict=True)
    ]
    dones = rt.state.complete_many(scripts)
    for (run_id, step_id, gen, result, encoded, info), graph, done in zip(items, graphs, dones, strict=True):
        try:
            _completed(rt, run_id, step_id, gen, graph, result, encoded, info, done, None)
        except Exception:
            log.exception("completing a step failed; the sweep publishes what it released", run_id=run_id)


def _completed(
    rt: Runtime,
    run_id: str,
    step_id: str,
    gen: int,
    graph: StepGraph,
    result: Any,
    encoded: str,
    info: dict[str, Any],
    done: Completion,
    stored: Callable[[], None] | None,
) -> None:
    """What follows a step's completion script: the first completion dispatches the successors
    it released, journals the step, and finishes the run or moves its rollback on."""
    if not done.first:  # a redelivery, or a delivery cut off and back after another completed it
        log.info("late completion refused: the step completed already", run_id=run_id, step_id=step_id)
        return
    if stored is not None:
        stored()
    if done.ready:  # one may run next in this process (fusion.py); the rest are published
        ready = fusion.keep(rt, run_id, gen, graph, done.ready, step_id, encoded)
        dispatch(rt, run_id, gen, graph, ready, {step_id: result})
    rt.journal.succeeded(run_id, step_id, result, info)
    if done.run_status == "finished":
        try:
            finish_run(rt, run_id, gen, graph)
        except SQLAlchemyError as exc:  # Redis says succeeded; the sweep brings SQL along (recovery)
            log.warning("run finished; its journal lags until the database answers", error=str(exc)[:200])
    elif done.run_status not in ACTIVE:
        control.late_completion(rt, run_id, step_id, done.run_status)


def finish_run(
    rt: Runtime, run_id: str, gen: int, graph: StepGraph, *, finished_at: datetime | None = None
) -> None:
    """The last step completed: compute the run's result, journal it, wake waiters, tell a parent.
    ``finished_at``: when that was, for a journal written later (else now)."""
    results = rt.state.results(run_id, sorted(set(refs_in(graph.result))))
    value = resolve(graph.result, results)
    sync_steps(rt, run_id)
    done = rt.store.transition_run(
        run_id, ("running", "waiting"), "succeeded", result=value, finished_at=finished_at
    )
    if done:
        log.info("run succeeded", run_id=run_id)
        events.run_finished(rt, run_id, "succeeded")
        rt.state.notify_finished(run_id)
        rt.state.expire(run_id, rt.settings.finished_state_ttl)
        parent = parent_step(rt, run_id)
        if parent is not None:  # a child run: its result completes the parent's step
            parent_id, step_id, parent_gen = parent
            complete(rt, parent_id, step_id, parent_gen, value, encode_result(step_id, value), None)


def deliver_signal(rt: Runtime, run_id: str, gen: int, step_id: str, payload: Any) -> None:
    """Complete a step waiting for a signal with its payload, once (special.take_signal)."""
    if special.take_signal(rt, run_id, step_id):
        complete(rt, run_id, step_id, gen, payload, encode_result(step_id, payload), None)


def recover(rt: Runtime, run_id: str, step_id: str, gen: int, *, delivery: str | None = None) -> None:
    """A completed step was delivered again: finish whatever its first delivery left undone
    (successors released but not published, steps fused into it that never finished)."""
    graph = rt.graph(run_id, gen)
    states = rt.state.step_states(run_id)
    stuck = [s for s in graph.successors(step_id) if states.get(s) == "queued"]
    if delivery:
        stuck += [s for s in fusion.orphans(rt, run_id, delivery) if s not in stuck]
    status = rt.state.status(run_id)
    if status in ACTIVE:
        dispatch(rt, run_id, gen, graph, stuck)
    elif status == "compensating":  # the first delivery may have died before moving the rollback on
        control.step_settled(rt, run_id)
    record = rt.store.get_run(run_id)
    if record is None:
        return
    if record.step(step_id).status != "succeeded":
        result = rt.state.results(run_id, [step_id]).get(step_id)
        rt.journal.succeeded(run_id, step_id, result, rt.state.step_info(run_id).get(step_id))
    if rt.state.status(run_id) == "succeeded" and record.status in ACTIVE:  # its first delivery died
        finish_run(rt, run_id, gen, graph, finished_at=rt.state.ended_at(run_id))
