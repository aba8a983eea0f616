"""Resuming a run: where it stopped, or from a chosen step (that step and its downstream again).

A resume gives the run a new generation: completed steps keep their journaled results,
everything else is reset and the ready steps are published again; messages of the old
generation are skipped at their claim.
"""

from __future__ import annotations

import json
import time

import structlog

from canvasflow.config.errors import ResumeRefused
from canvasflow.workflows.authoring.definition import registry
from canvasflow.workflows.runs.lifecycle import launch_ready
from canvasflow.workflows.runs.records import get_record, run_labels
from canvasflow.workflows.runtime import events
from canvasflow.workflows.runtime.active import idle_seconds, mark_active
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.events import CREATED
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.outcome import ROLLBACK_ORIGIN
from canvasflow.workflows.runtime.timers import WAKE
from canvasflow.workflows.store.records import RESUMABLE, RunRecord

log = structlog.get_logger("canvasflow.lifecycle")


def resume(run_id: str, *, from_step: str | None = None) -> RunRecord:
    """Run a failed, cancelled or stalled run again from where it stopped: completed steps are kept.

    With ``from_step`` that step and every step downstream of it run again (their earlier
    results are dropped, their earlier effects are *not* undone), the other completed steps
    are kept; this also works on a succeeded run. Compensated runs are refused: their
    effects were undone, start a new run. A ``running`` run is accepted once it has made no
    progress for ``CANVASFLOW_STALLED_AFTER`` seconds.
    """
    rt = runtime()
    record = get_record(run_id)
    allowed = RESUMABLE | ({"succeeded"} if from_step is not None else set())
    if record.status == "running" and from_step is None:
        idle = idle_seconds(rt, run_id)
        if idle is None or idle < rt.settings.stalled_after:
            raise ResumeRefused(
                f"run {run_id} is {record.status} and made progress {idle or 0:.0f}s ago; a run is "
                f"resumable once stalled for {rt.settings.stalled_after}s (CANVASFLOW_STALLED_AFTER): "
                "see `canvasflow runs --stalled`"
            )
    elif record.status not in allowed:
        raise ResumeRefused(
            f"run {run_id} is {record.status}; only failed or cancelled runs (or stalled ones) can be "
            "resumed"
            + (", and succeeded ones from a step (--from STEP)" if from_step is None else " from a step")
            + (
                " (a compensated run was rolled back: start a new run)"
                if record.status in ("compensated", "compensation_failed")
                else ""
            )
            + (" (it is still active: cancel it first)" if record.status in ("running", "waiting") else "")
        )
    if record.version not in registry.versions(record.workflow):
        raise ResumeRefused(
            f"run {run_id} was started under {record.workflow} version {record.version}, which is not "
            f"registered here (registered: {', '.join(registry.versions(record.workflow)) or 'none'}); "
            "register that version to resume it, or start a new run"
        )
    graph = StepGraph.from_json(record.graph)
    redo = _downstream(graph, run_id, from_step) if from_step is not None else set()
    if not restart(rt, record, (record.status,), redo=redo, from_step=from_step):
        raise ResumeRefused(f"run {run_id} changed state while resuming; look at it again")
    return get_record(run_id)


def restart(
    rt: Runtime,
    record: RunRecord,
    expected: tuple[str, ...],
    *,
    redo: set[str] | frozenset[str] = frozenset(),
    from_step: str | None = None,
) -> bool:
    """A new generation of ``record``: journaled and Redis-completed steps kept (but those in
    ``redo``), the rest dispatched. Used by resume and by recovery (a run whose Redis state
    was lost). False when the run left ``expected`` meanwhile (someone else moved it)."""
    run_id = record.id
    graph = StepGraph.from_json(record.graph)
    completed = {
        s.step_id: s.result
        for s in record.steps
        if s.status == "succeeded" and s.step_id in graph.steps and s.step_id not in redo
    }
    live = rt.state.step_states(run_id)
    late = [
        sid
        for sid, st in live.items()
        if st == "succeeded" and sid in graph.steps and sid not in completed and sid not in redo
    ]
    completed.update(rt.state.results(run_id, late))
    gen = record.generation + 1
    if not rt.store.transition_run(
        run_id, expected, "running", generation=gen, error=None, finished_at=None, result=None
    ):
        return False
    todo = [sid for sid in graph.steps if sid not in completed]
    # a sleep run again (``from_step`` upstream of it) sleeps anew; one interrupted keeps its due time
    again = [sid for sid in todo if sid in redo and graph.steps[sid].kind == "sleep"]
    rt.store.record_steps(
        run_id,
        [
            {"step_id": sid, "status": "pending", "error": None, "result": None}
            | ({"wakes_at": None} if sid in again else {})
            for sid in todo
        ],
        "step.reset",
    )
    pending = {sid: n for sid in todo if (n := sum(d not in completed for d in graph.steps[sid].deps))}
    _clear_partial(rt, run_id, graph, todo, again)
    rt.redis.hdel(rt.state.key(run_id, "meta"), ROLLBACK_ORIGIN, "error")  # a new attempt, no old verdict
    rt.state.init_run(
        run_id,
        generation=gen,
        graph_json=json.dumps(record.graph),
        pending=pending,
        completed={k: json.dumps(v) for k, v in completed.items()},
        left=len(todo),
        labels={
            **run_labels(record.workflow, record.version, record.parent_run_id, record.parent_step),
            CREATED: str(record.created_at.timestamp()) if record.created_at else str(time.time()),
        },
    )
    rt.state.expire(run_id, None)  # active again: what the end of the last attempt set to expire stays
    mark_active(rt, run_id)
    log.info(
        "run restarted",
        run_id=run_id,
        generation=gen,
        kept=len(completed),
        todo=len(todo),
        from_step=from_step,
    )
    resumed = {"generation": gen, "kept": sorted(completed), "from_step": from_step}
    rt.store.record_event(run_id, None, "run.resumed", resumed)
    events.run_started(run_id, record.workflow, record.version, gen, record.parent_run_id)
    launch_ready(rt, run_id, gen, graph, [sid for sid in todo if sid not in pending])
    return True


def _downstream(graph: StepGraph, run_id: str, step_id: str) -> set[str]:
    """``step_id`` and every step that depends on it, directly or not."""
    if step_id not in graph.steps:
        base = step_id.split("#", 1)[0]
        hint = f" (a map chunk: resume from its map step {base!r})" if base in graph.steps else ""
        raise ResumeRefused(
            f"run {run_id} has no step {step_id!r}{hint}; its steps: {', '.join(graph.steps)}"
        )
    seen = {step_id}
    stack = [step_id]
    while stack:
        for nxt in graph.successors(stack.pop()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _clear_partial(rt: Runtime, run_id: str, graph: StepGraph, todo: list[str], sleeps: list[str]) -> None:
    """What the last attempt left of the steps to run: maps' chunk results, errbacks already
    run, and the due times of ``sleeps`` (sleeps run again); one round trip."""
    maps = [sid for sid in todo if graph.steps[sid].kind == "map"]
    keys = [rt.state.key(run_id, f"chunks:{sid}") for sid in maps]
    keys += [rt.state.key(run_id, f"errback:{i}") for i in range(len(graph.errbacks))]
    p = rt.redis.pipeline(transaction=False)
    if keys:
        p.delete(*keys)
    if maps:
        p.hdel(rt.state.key(run_id, "chunksleft"), *maps)
    if sleeps:
        p.hdel(rt.state.key(run_id, WAKE), *sleeps)
    p.execute()
