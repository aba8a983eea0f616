"""Move a run forward: publish its ready steps, complete a step, finish the run.

What follows a step's result, wherever it came from (a worker's delivery, a map's last chunk,
a signal, a child run, a woken sleep, the sweep's recovery of a redelivered step):

1. :func:`complete` runs the state's completion script: the first completion stores the result
   and releases the successors whose joins reached zero (a second one changes nothing);
2. the released successors are dispatched (:func:`dispatch`), one of them possibly run next in
   this process (fusion.py), the rest published with their arguments resolved;
3. the step is written to the journal; when it was the last, :func:`finish_run` computes the
   run's result, journals it, wakes waiters and completes a parent run's step.

:mod:`canvasflow.workflows.runtime.executor` runs the step bodies and calls in here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from canvasflow.workflows.runtime import bundles, control, deadlines, events, fusion, sending, special
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.graph import StepGraph, refs_in, resolve
from canvasflow.workflows.runtime.journal import sync_steps
from canvasflow.workflows.runtime.outcome import parent_step
from canvasflow.workflows.runtime.state import ACTIVE, Completion
from canvasflow.workflows.runtime.wire import encode_result
from canvasflow.workflows.store.rows import now

log = structlog.get_logger("canvasflow.executor")


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
        info = {"finished_at": now().isoformat(), "gen": gen}
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
