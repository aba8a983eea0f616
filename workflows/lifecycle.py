"""Run lifecycle transitions made by clients: start, resume, cancel, signal.

Each checks its input first and changes nothing when it refuses: an unknown workflow,
invalid inputs or a cycle create no run; an unknown run id or a run in the wrong state
raise a CanvasflowError saying what to do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from kombu.exceptions import OperationalError

from canvasflow.config.celery_app import redact
from canvasflow.config.errors import BrokerUnavailable, InputError, ResumeRefused, RunNotFound, RunStateError
from canvasflow.workflows.definition import Workflow, registry
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.executor import dispatch, finish_run
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.store.records import RESUMABLE, TERMINAL, RunRecord

log = structlog.get_logger("canvasflow.lifecycle")


def start_run(
    name: str,
    inputs: Any,
    *,
    version: str | None = None,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    parent_step: str | None = None,
    key: str | None = None,
    tags: Sequence[str] = (),
) -> str:
    """Validate, compile, journal and dispatch a new run; return its id.

    With a business ``key`` the start is idempotent: when a run with that key exists (or
    another start creates it first, racing), its id is returned and nothing is dispatched.
    """
    key, tags = _checked_key(key), _checked_tags(tags)
    rt = runtime()
    if key is not None and (held := rt.store.run_by_key(key)) is not None:
        return _holder(held, name, key)
    wf = registry.get(name, version)
    values = wf.validate(inputs)
    graph = wf.compile(values)
    _check_routes(rt, graph)
    run_id = run_id or uuid.uuid4().hex
    return _launch(rt, run_id, wf, values, graph, parent_run_id, parent_step, key, tags)


def _check_routes(rt: Runtime, graph: StepGraph) -> None:
    """Refuse, before anything is created, routed steps that no live engine can take."""
    routed = [(sid, n.options["routing"]) for sid, n in graph.steps.items() if "routing" in n.options]
    if routed:
        from canvasflow.workers.routing.router import preflight

        preflight(rt.redis, rt.settings, routed)


def _holder(held: RunRecord, name: str, key: str) -> str:
    """The id of the run that holds ``key``, when it is a run of workflow ``name``."""
    if held.workflow != name:
        raise InputError(
            f"key {key!r} is held by run {held.id} of workflow {held.workflow!r}, not {name!r}: "
            "a key names one run across all workflows (put the workflow in the key if needed)"
        )
    log.info("run with this key exists", run_id=held.id, key=key)
    return held.id


def _checked_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > 200:
        raise InputError(f"key must be a non-empty string of at most 200 characters, got {key!r}")
    return key


def _checked_tags(tags: Sequence[str] | None) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    found = list(dict.fromkeys(tags or ()))
    bad = [t for t in found if not isinstance(t, str) or not t or len(t) > 200]
    if bad:
        raise InputError(f"tags must be non-empty strings of at most 200 characters; refused: {bad!r}")
    return found


def start_child(name: str, inputs: Any, *, parent_run_id: str, parent_step: str, parent_gen: int) -> str:
    """Start a sub-workflow run; its id is derived from the parent step, so a duplicate is a no-op."""
    run_id = f"{parent_run_id}.{parent_gen}.{uuid.uuid5(uuid.NAMESPACE_URL, parent_step).hex[:12]}"
    rt = runtime()
    if rt.store.get_run(run_id, with_steps=False) is not None:
        return run_id
    return start_run(name, inputs, run_id=run_id, parent_run_id=parent_run_id, parent_step=parent_step)


def _launch(
    rt: Runtime,
    run_id: str,
    wf: Workflow,
    values: dict[str, Any],
    graph: StepGraph,
    parent_run_id: str | None,
    parent_step: str | None,
    key: str | None = None,
    tags: Sequence[str] = (),
) -> str:
    _record_definition(rt, wf)
    graph_json = graph.to_json()
    rows = [
        {
            "step_id": n.id,
            "task": n.task,
            "kind": n.kind,
            "queue": n.options.get("queue"),
            "compensation": n.compensation,
        }
        for n in graph.steps.values()
    ]
    created = rt.store.create_run(
        run_id=run_id,
        workflow=wf.name,
        version=wf.version,
        inputs=values,
        graph=graph_json,
        steps=rows,
        parent_run_id=parent_run_id,
        parent_step=parent_step,
        key=key,
        tags=tags,
    )
    if created != run_id:  # a racing start with the same key journaled its run first
        held = rt.store.get_run(created, with_steps=False)
        assert held is not None and key is not None
        return _holder(held, wf.name, key)
    pending = {sid: len(n.deps) for sid, n in graph.steps.items() if n.deps}
    rt.state.init_run(
        run_id,
        generation=1,
        graph_json=json.dumps(graph_json),
        pending=pending,
        completed={},
        left=len(graph.steps),
        labels=run_labels(wf.name, wf.version, parent_run_id, parent_step),
    )
    log.info("run started", run_id=run_id, workflow=wf.name, version=wf.version, steps=len(graph.steps))
    _go(rt, run_id, 1, graph, graph.roots())
    return run_id


def run_labels(
    workflow: str, version: str, parent_run_id: str | None, parent_step: str | None
) -> dict[str, str]:
    """What a step's ``context()`` reads of its run without a SQL query (kept in Redis)."""
    return {
        "workflow": workflow,
        "version": version,
        "parent_run": parent_run_id or "",
        "parent_step": parent_step or "",
    }


_recorded: set[tuple[int, str, str]] = set()


def _record_definition(rt: Runtime, wf: Workflow) -> None:
    """Journal each (workflow, version) once, with its input schema, so old runs stay explainable."""
    key = (id(rt), wf.name, wf.version)
    if key not in _recorded:
        rt.store.record_definition(wf.name, wf.version, wf.inputs.model_json_schema())
        _recorded.add(key)


def _go(rt: Runtime, run_id: str, gen: int, graph: StepGraph, ready: list[str]) -> None:
    if not graph.steps:
        rt.state.transition(run_id, ("running",), "succeeded")
        finish_run(rt, run_id, gen, graph)
        return
    try:
        dispatch(rt, run_id, gen, graph, ready)
    except OperationalError as exc:
        url = redact(rt.app.conf.broker_url)
        error = {"type": "BrokerUnavailable", "message": f"broker {url}: {exc}", "retryable": True}
        rt.state.transition(run_id, ("running",), "failed")
        rt.store.transition_run(run_id, ("running",), "failed", error=error)
        raise BrokerUnavailable(
            f"broker {url} did not take the run's first steps ({exc}); the run {run_id} is "
            "recorded as failed: start the broker, then `canvasflow resume` it"
        ) from None


def get_record(run_id: str) -> RunRecord:
    record = runtime().store.get_run(run_id)
    if record is None:
        raise RunNotFound(f"no run with id {run_id!r}: list runs with `canvasflow runs`")
    return record


def resume(run_id: str) -> RunRecord:
    """Run a failed or cancelled run again from where it stopped: completed steps are kept."""
    rt = runtime()
    record = get_record(run_id)
    if record.status not in RESUMABLE:
        raise ResumeRefused(
            f"run {run_id} is {record.status}; only failed or cancelled runs can be resumed"
            + (
                " (a compensated run was rolled back: start a new run)"
                if record.status == "compensated"
                else ""
            )
        )
    if record.version not in registry.versions(record.workflow):
        raise ResumeRefused(
            f"run {run_id} was started under {record.workflow} version {record.version}, which is not "
            f"registered here (registered: {', '.join(registry.versions(record.workflow)) or 'none'}); "
            "register that version to resume it, or start a new run"
        )
    graph = StepGraph.from_json(record.graph)
    completed = {
        s.step_id: s.result for s in record.steps if s.status == "succeeded" and s.step_id in graph.steps
    }
    live = rt.state.step_states(run_id)
    late = [
        sid for sid, st in live.items() if st == "succeeded" and sid in graph.steps and sid not in completed
    ]
    completed.update(rt.state.results(run_id, late))
    gen = record.generation + 1
    if not rt.store.transition_run(
        run_id, RESUMABLE, "running", generation=gen, error=None, finished_at=None
    ):
        raise ResumeRefused(f"run {run_id} changed state while resuming; look at it again")
    todo = [sid for sid in graph.steps if sid not in completed]
    rt.store.record_steps(
        run_id, [{"step_id": sid, "status": "pending", "error": None} for sid in todo], "step.reset"
    )
    pending = {sid: n for sid in todo if (n := sum(d not in completed for d in graph.steps[sid].deps))}
    _clear_partial(rt, run_id, graph, todo)
    rt.state.init_run(
        run_id,
        generation=gen,
        graph_json=json.dumps(record.graph),
        pending=pending,
        completed={k: json.dumps(v) for k, v in completed.items()},
        left=len(todo),
        labels=run_labels(record.workflow, record.version, record.parent_run_id, record.parent_step),
    )
    log.info("run resumed", run_id=run_id, generation=gen, kept=len(completed), todo=len(todo))
    _go(rt, run_id, gen, graph, [sid for sid in todo if sid not in pending])
    return get_record(run_id)


def _clear_partial(rt: Runtime, run_id: str, graph: StepGraph, todo: list[str]) -> None:
    keys = [rt.state.key(run_id, f"chunks:{sid}") for sid in todo if graph.steps[sid].kind == "map"]
    keys += [rt.state.key(run_id, f"errback:{i}") for i in range(len(graph.errbacks))]
    if keys:
        rt.redis.delete(*keys)
    maps = [sid for sid in todo if graph.steps[sid].kind == "map"]
    if maps:
        rt.redis.hdel(rt.state.key(run_id, "chunksleft"), *maps)


def cancel(run_id: str) -> RunRecord:
    """Stop dispatching: queued steps are skipped, running ones finish without successors."""
    rt = runtime()
    record = get_record(run_id)
    if record.status in TERMINAL:
        raise RunStateError(f"run {run_id} is already {record.status}; nothing to cancel")
    rt.state.transition(run_id, ("pending", "running", "waiting"), "cancelled")
    from canvasflow.workflows.runtime.journal import sync_steps

    sync_steps(rt, run_id)
    if not rt.store.transition_run(run_id, ("pending", "running", "waiting"), "cancelled"):
        raise RunStateError(f"run {run_id} changed state while cancelling; look at it again")
    rt.state.notify_finished(run_id)
    rt.state.expire(run_id, rt.settings.result_expires)
    for child in rt.store.children(run_id):
        if child.status not in TERMINAL:
            cancel(child.id)
    return get_record(run_id)


def signal(run_id: str, name: str, payload: Any = None) -> RunRecord:
    """Deliver an outside signal; the steps waiting for ``name`` complete with ``payload``."""
    rt = runtime()
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise InputError(f"signal {name}: payload is not JSON ({exc})") from None
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InputError(f"signal {name}: payload is not JSON ({exc})") from None
    record = get_record(run_id)
    if record.status in TERMINAL:
        raise RunStateError(f"run {run_id} is {record.status}; it takes no more signals")
    if not rt.store.put_signal(run_id, name, payload):
        raise RunStateError(f"run {run_id} already received signal {name!r}")
    graph = StepGraph.from_json(record.graph)
    states = rt.state.step_states(run_id)
    from canvasflow.workflows.runtime.special import deliver_signal

    for node in graph.steps.values():
        if node.kind == "signal" and node.spec.get("name") == name and states.get(node.id) == "waiting":
            deliver_signal(rt, run_id, record.generation, node.id, payload)
    return get_record(run_id)


def _rehydrate(rt: Runtime, record: RunRecord) -> None:
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
    """Compensate every completed step of a succeeded run, in reverse dependency order."""
    rt = runtime()
    record = get_record(run_id)
    if record.status != "succeeded":
        raise RunStateError(f"run {run_id} is {record.status}; only a succeeded run can be undone")
    _rehydrate(rt, record)
    if not rt.store.transition_run(run_id, ("succeeded",), "compensating", finished_at=None):
        raise RunStateError(f"run {run_id} changed state while undoing; look at it again")
    rt.state.transition(run_id, ("succeeded",), "compensating")
    from canvasflow.compensation import rollback

    rollback.begin(rt, run_id, record.generation)
    return get_record(run_id)


def retry_compensation(run_id: str) -> RunRecord:
    """Run again the compensations that failed after their retries (``compensation_failed`` runs)."""
    rt = runtime()
    record = get_record(run_id)
    if record.status != "compensation_failed":
        raise RunStateError(
            f"run {run_id} is {record.status}; only a compensation_failed run has compensations to retry"
        )
    _rehydrate(rt, record)
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
    from canvasflow.compensation import rollback

    rollback.progress(rt, run_id, record.generation)
    return get_record(run_id)
