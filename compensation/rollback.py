"""The rollback of a failed run (the I/O side of the planner).

``progress`` is called whenever something the planner depends on changes: the failure
itself, a sibling completing or being skipped late, a compensation ending. Each call
reads the state, dispatches the ready compensations (each claimed once with HSETNX), and
closes the run when nothing is left: ``compensated``, or ``compensation_failed`` when a
compensation failed after its retries (the others still ran), or, when no compensation ran
at all, ``failed`` (``cancelled`` after a cancel): see workflows/runtime/outcome.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import structlog

from canvasflow.compensation.claims import RollbackClaims, parse_stamp
from canvasflow.compensation.header import COMP_HEADER
from canvasflow.compensation.leases import Leases, holder_dead, holder_id
from canvasflow.compensation.planner import node_of, plan
from canvasflow.compensation.states import comp_key, comp_states
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.failure import close_failed
from canvasflow.workflows.runtime.graph import StepGraph, resolve
from canvasflow.workflows.runtime.journal import sync_compensations, sync_steps
from canvasflow.workflows.runtime.outcome import rollback_origin, rollback_status, skip_unrun
from canvasflow.workflows.runtime.state import as_text
from canvasflow.workflows.runtime.wire import held_by, task_id_for

log = structlog.get_logger("canvasflow.compensation")
CHUNK_COMP_TASK = "canvasflow.compensate_chunk"


@dataclass(frozen=True)
class _Tools:
    claims: RollbackClaims
    leases: Leases


_tools_by_runtime: dict[int, _Tools] = {}


def rollback_tools(rt: Runtime) -> _Tools:
    """This process's claim scripts and lease keeper (one per runtime)."""
    tools = _tools_by_runtime.get(id(rt))
    if tools is None:
        tools = _Tools(RollbackClaims(rt.redis), Leases(rt.redis, rt.settings.compensation_lease_ttl))
        _tools_by_runtime[id(rt)] = tools
    return tools


def mark_not_needed(rt: Runtime, run_id: str, unit: str) -> None:
    rt.redis.hset(comp_key(rt, run_id), unit, "not_needed")


# -- triggers ----------------------------------------------------------------------------
def begin(rt: Runtime, run_id: str, gen: int) -> None:
    log.info("rollback started", run_id=run_id)
    graph = rt.graph(run_id, gen)
    if graph.options.get("inflight") == "revoke":
        _revoke_in_flight(rt, run_id, gen)
    progress(rt, run_id, gen)


def late_completion(rt: Runtime, run_id: str, step_id: str, run_status: str) -> None:
    """A step completed after the run stopped being active: it may need undoing too."""
    if run_status == "compensating":
        gen = _generation(rt, run_id)
        progress(rt, run_id, gen)


def step_settled(rt: Runtime, run_id: str) -> None:
    """An in-flight step was skipped or failed while the run was rolling back."""
    if rt.state.status(run_id) == "compensating":
        progress(rt, run_id, _generation(rt, run_id))


def _generation(rt: Runtime, run_id: str) -> int:
    raw = rt.redis.hget(rt.state.key(run_id, "meta"), "gen")
    return int(raw) if raw else 1


# -- the loop ------------------------------------------------------------------------------
def progress(rt: Runtime, run_id: str, gen: int) -> None:
    graph = rt.graph(run_id, gen)
    states = comp_states(rt, run_id)
    p = plan(graph, rt.state.step_states(run_id), states)
    tools = rollback_tools(rt)
    me = holder_id()
    ckey, disp_key = comp_key(rt, run_id), rt.state.key(run_id, "compdisp")
    for unit in p.ready:
        if tools.claims.mark_dispatched(ckey, disp_key, unit, me):
            _dispatch(rt, run_id, gen, graph, unit)
    stranded = _stranded(rt, run_id, [u for u in p.waiting if states.get(u) == "dispatched"])
    stranded += _abandoned(rt, run_id, [u for u in p.waiting if states.get(u) == "running"])
    for unit in stranded:
        log.warning("compensation published again: its publisher died or it was never picked up", unit=unit)
        _dispatch(rt, run_id, gen, graph, unit, again=True)
    if p.done:
        _close(rt, run_id, failed=p.failed)


def _stranded(rt: Runtime, run_id: str, dispatched: list[str]) -> list[str]:
    """Units marked dispatched whose message may never have left (publisher dead) or was lost
    (not claimed in time); each is taken over by one caller, and a duplicate is harmless."""
    if not dispatched:
        return []
    disp_key = rt.state.key(run_id, "compdisp")
    seen = rt.redis.hmget(disp_key, dispatched)
    limit = rt.settings.compensation_redispatch_after
    out = []
    for unit, raw in zip(dispatched, seen, strict=True):
        stamp = parse_stamp(raw)
        by, at = str(stamp.get("by", "")), float(stamp.get("at", 0))
        if (holder_dead(by) or time.time() - at > limit) and rollback_tools(rt).claims.take_over_dispatch(
            comp_key(rt, run_id), disp_key, unit, as_text(raw) if raw else "", holder_id()
        ):
            out.append(unit)
    return out


def _abandoned(rt: Runtime, run_id: str, running: list[str]) -> list[str]:
    """Units running without a lease: their process died and nothing redelivered them."""
    if not running:
        return []
    tools, me = rollback_tools(rt), holder_id()
    ckey, disp_key = comp_key(rt, run_id), rt.state.key(run_id, "compdisp")
    return [
        unit
        for unit in running
        if tools.claims.take_over_abandoned(
            ckey, disp_key, rt.state.key(run_id, f"complease:{unit}"), unit, me
        )
    ]


def _dispatch(rt: Runtime, run_id: str, gen: int, graph: StepGraph, unit: str, again: bool = False) -> None:
    node = graph.steps[node_of(unit)]
    assert node.compensation is not None
    comp_task = rt.app.tasks.get(node.compensation)
    queue = getattr(comp_task, "explicit_queue", None) or node.options.get("queue")
    results = rt.state.results(run_id, sorted(node.reads() | {node.id}))
    args = [resolve(a, results) for a in node.args]
    kwargs = {k: resolve(v, results) for k, v in node.kwargs.items()}
    round_key = rt.state.key(run_id, "compround")
    attempt = int(rt.redis.hget(round_key, unit) or 1) if again else rt.redis.hincrby(round_key, unit, 1)
    header = {"run": run_id, "unit": unit, "gen": gen, "round": attempt}
    options: dict[str, Any] = {
        "task_id": f"{run_id}-{unit}-comp{attempt}-g{gen}",
        "headers": {COMP_HEADER: header},
        "queue": queue,
        "ignore_result": True,
        "add_to_parent": False,
    }
    if "priority" in node.options:  # the step's, in the broker's terms already (runtime/priorities.py)
        options["priority"] = node.options["priority"]
    # an event only: journaled states move forward, and this write may land after the
    # compensation's own (final) one; the live state is in Redis
    rt.journal.record_step(run_id, unit, "compensation.dispatched")
    if node.kind == "map":
        index = int(unit.split("#", 1)[1])
        size = max(int(node.spec.get("chunk_size") or 1), 1)
        items = list(args[0])[index * size : (index + 1) * size]
        chunk_results = json.loads(
            as_text(rt.redis.hget(rt.state.key(run_id, f"chunks:{node.id}"), str(index)))
        )
        rt.app.send_task(
            CHUNK_COMP_TASK, args=[node.compensation, node.spec["mapper"], items, chunk_results], **options
        )
    else:
        rt.app.send_task(node.compensation, args=[results.get(node.id), *args], kwargs=kwargs, **options)
    log.info("compensation dispatched", run_id=run_id, step_id=unit, task=node.compensation)


def _close(rt: Runtime, run_id: str, failed: list[str]) -> None:
    comps = comp_states(rt, run_id)
    final = rollback_status(comps, failed, rollback_origin(rt, run_id))
    if not rt.state.transition(run_id, ("compensating",), final):
        return
    # the failing worker may not have journaled 'compensating' yet: journal it first
    sync_steps(rt, run_id)
    skip_unrun(rt, run_id)
    sync_compensations(rt, run_id, comps)
    raw = rt.redis.hget(rt.state.key(run_id, "meta"), "error")
    error: dict[str, Any] = json.loads(raw) if raw else {}
    rt.store.transition_run(run_id, ("running", "waiting"), "compensating", error=error or None)
    if failed:
        error["compensation_failed"] = failed
    rt.store.transition_run(run_id, ("compensating",), final, error=error or None)
    log.info("rollback finished", run_id=run_id, status=final, failed=failed)
    close_failed(rt, run_id, {"message": f"run {final}"})


def finish_unit(
    rt: Runtime,
    run_id: str,
    unit: str,
    gen: int,
    status: str,
    error: dict[str, Any] | None = None,
    *,
    fence: tuple[str, str] | None = None,
) -> bool:
    """Record the unit's end and move the rollback on; False when ``fence`` (the delivery's claim
    field and holder) shows another delivery took the unit over, or it finished already: a late
    result (its holder was cut off past its lease) is refused and changes nothing."""
    if fence is not None:
        field, holder = fence
        keys = (rt.state.key(run_id, "compclaim"), comp_key(rt, run_id), rt.state.key(run_id, "comperr"))
        refused = rollback_tools(rt).claims.finish(
            *keys, field, unit, status, holder, json.dumps(error) if error else ""
        )
        if refused is not None:
            log.warning("late compensation result refused", unit=unit, status=status, fenced_by=refused)
            return False
    else:
        p = rt.redis.pipeline(transaction=True)
        p.hset(comp_key(rt, run_id), unit, status)
        if error:
            p.hset(rt.state.key(run_id, "comperr"), unit, json.dumps(error))
        p.execute()
    rt.journal.record_step(
        run_id, unit, f"compensation.{status}", compensation_status=status, compensation_error=error
    )
    if status == "compensation_failed":
        log.error("compensation failed", error=error)
    progress(rt, run_id, gen)
    return True


def _revoke_in_flight(rt: Runtime, run_id: str, gen: int) -> None:
    states = rt.state.step_states(run_id)
    info = rt.state.step_info(run_id)
    ids = []
    for unit, st in states.items():
        if st == "running":
            node, _, chunk = unit.partition("#")
            # a fused step runs inside another step's delivery: that task id is the one to revoke
            claimed = held_by(info.get(unit) or {})
            ids.append(claimed or task_id_for(run_id, node, gen, int(chunk) if chunk else None))
    if ids:
        log.info("revoking in-flight steps", count=len(ids))
        rt.app.control.revoke(ids, terminate=True)
