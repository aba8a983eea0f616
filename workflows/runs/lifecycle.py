"""Run lifecycle transitions made by clients: start and signal (resume: resumption.py;
cancel, undo, compensate: rollbacks.py).

Each checks its input first and changes nothing when it refuses: an unknown workflow,
invalid inputs or a cycle create no run; an unknown run id or a run in the wrong state
raise a CanvasflowError saying what to do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import redis
import structlog
from kombu.exceptions import OperationalError

from canvasflow.config.brokers import broker_kind
from canvasflow.config.errors import (
    BrokerUnavailable,
    InputError,
    RunStateError,
)
from canvasflow.config.settings import redact
from canvasflow.workers.routing.known import refuse_unknown
from canvasflow.workers.routing.router import preflight
from canvasflow.workflows.authoring.definition import Workflow, registry
from canvasflow.workflows.runs.launch import (
    check_state,
    launch_of,
    record_definition,
    state_down,
    state_written,
)
from canvasflow.workflows.runs.reach import capability_needs
from canvasflow.workflows.runs.records import get_record
from canvasflow.workflows.runtime import deadlines, events, priorities
from canvasflow.workflows.runtime.active import active_key
from canvasflow.workflows.runtime.advance import deliver_signal, dispatch, finish_run
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.outcome import skip_unrun
from canvasflow.workflows.runtime.wire import check_value
from canvasflow.workflows.store.records import TERMINAL, RunRecord

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
    priority: int | None = None,
) -> str:
    """Validate, compile, journal and dispatch a new run; return its id.

    ``priority`` (0..9, 9 first) goes to every step of the run and its compensations, over
    the steps' own (``@step(priority=)``).

    With a business ``key`` the start is idempotent: when a run with that key exists (or
    another start creates it first, racing), its id is returned and nothing is dispatched.
    """
    key, tags = checked_key(key), checked_tags(tags)
    if priority is not None:
        priorities.checked(priority)
    rt = runtime()
    if key is not None and (held := rt.store.run_by_key(key)) is not None:
        return _holder(held, name, key)
    wf = registry.get(name, version)
    values, graph = prepare(rt, wf, inputs, priority)
    fresh = run_id is None  # a new random id: no state of it can exist (seed.py)
    run_id = run_id or uuid.uuid4().hex
    return _launch(rt, run_id, wf, values, graph, parent_run_id, parent_step, key, tags, fresh)


def prepare(
    rt: Runtime, wf: Workflow, inputs: Any, priority: int | None = None
) -> tuple[dict[str, Any], StepGraph]:
    """Validated inputs and the compiled graph of a new run (its steps at ``priority``), or the
    refusal (nothing written)."""
    check_value(f"the inputs of {wf.name}", inputs)  # before validating: refuse a huge input cheaply
    values = wf.validate(inputs)
    graph = wf.compile(values)
    priorities.apply(graph, priority, broker_kind(rt.app.conf.broker_url))
    _check_routes(rt, graph)
    return values, graph


def _check_routes(rt: Runtime, graph: StepGraph) -> None:
    """Refuse, before anything is created, steps whose capability nobody serves (known.py) and
    routed steps that no live engine can take."""
    refuse_unknown(rt, capability_needs(graph))
    routed = [(sid, n.options["routing"]) for sid, n in graph.steps.items() if "routing" in n.options]
    if routed:
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


def checked_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > 200:
        raise InputError(f"key must be a non-empty string of at most 200 characters, got {key!r}")
    return key


def checked_tags(tags: Sequence[str] | None) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    found = list(dict.fromkeys(tags or ()))
    bad = [t for t in found if not isinstance(t, str) or not t or len(t) > 200]
    if bad:
        raise InputError(f"tags must be non-empty strings of at most 200 characters; refused: {bad!r}")
    return found


def start_child(name: str, inputs: Any, *, parent_run_id: str, parent_step: str, parent_gen: int) -> str:
    """Start a sub-workflow run, at its parent's priority; its id is derived from the parent step,
    so a duplicate is a no-op."""
    run_id = f"{parent_run_id}.{parent_gen}.{uuid.uuid5(uuid.NAMESPACE_URL, parent_step).hex[:12]}"
    rt = runtime()
    if rt.store.get_run(run_id, with_steps=False) is not None:
        return run_id
    priority = priorities.run_priority(rt.graph(parent_run_id, parent_gen))  # the parent's, if any
    return start_run(
        name, inputs, run_id=run_id, parent_run_id=parent_run_id, parent_step=parent_step, priority=priority
    )


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
    fresh: bool = False,
) -> str:
    check_state(rt)
    record_definition(rt, wf)
    new = launch_of(rt, run_id, wf, values, graph, parent_run_id, parent_step, key, tags)
    created = rt.store.create_run(**new.journal)
    if created != run_id:  # a racing start with the same key journaled its run first
        held = rt.store.get_run(created, with_steps=False)
        assert held is not None and key is not None
        return _holder(held, wf.name, key)
    try:
        rt.state.init_run(run_id, generation=1, index=active_key(rt), fresh=fresh, **new.state)
        state_written(rt)
    except (redis.RedisError, OSError) as exc:
        _forget(rt, run_id)  # went down between the check and here: leave no orphan
        raise state_down(rt, exc) from None
    log.info("run started", run_id=run_id, workflow=wf.name, version=wf.version, steps=len(graph.steps))
    events.run_started(run_id, wf.name, wf.version, 1, parent_run_id)
    launch_ready(rt, run_id, 1, graph, graph.roots())
    return run_id


def _forget(rt: Runtime, run_id: str) -> None:
    rt.store.delete_run(run_id)


def launch_ready(rt: Runtime, run_id: str, gen: int, graph: StepGraph, ready: list[str]) -> None:
    """Dispatch the ``ready`` steps of generation ``gen`` (a run without steps succeeds at once)
    and start the run's clock; a broker that refuses them fails the run (BrokerUnavailable).
    Start and resume both end here."""
    if not graph.steps:
        rt.state.transition(run_id, ("running",), "succeeded")
        finish_run(rt, run_id, gen, graph)
        return
    try:
        dispatch(rt, run_id, gen, graph, ready)
        if graph.options.get("timeout"):
            deadlines.run_started(rt, run_id, gen, graph)
    except OperationalError as exc:
        url = redact(rt.app.conf.broker_url)
        error = {"type": "BrokerUnavailable", "message": f"broker {url}: {exc}", "retryable": True}
        rt.state.transition(run_id, ("running",), "failed")
        skip_unrun(rt, run_id)
        rt.store.transition_run(run_id, ("running",), "failed", error=error)
        events.run_finished(rt, run_id, "failed", error)
        raise BrokerUnavailable(
            f"broker {url} did not take the run's first steps ({exc}); the run {run_id} is "
            "recorded as failed: start the broker, then `canvasflow resume` it"
        ) from None


def signal(run_id: str, name: str, payload: Any = None) -> RunRecord:
    """Deliver an outside signal; the steps waiting for ``name`` complete with ``payload``."""
    if not send_signal(run_id, name, payload):
        raise RunStateError(f"run {run_id} already received signal {name!r}")
    return get_record(run_id)


def send_signal(run_id: str, name: str, payload: Any = None) -> bool:
    """Store signal ``name`` of a run once and complete the steps waiting for it; False when the
    run had it already (a second send is applied once: the waiting steps get the first payload)."""
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
    check_value(f"the payload of signal {name}", payload)
    record = get_record(run_id)
    if record.status in TERMINAL:
        raise RunStateError(f"run {run_id} is {record.status}; it takes no more signals")
    graph = StepGraph.from_json(record.graph)
    awaited = sorted({str(n.spec.get("name")) for n in graph.steps.values() if n.kind == "signal"})
    if name not in awaited:
        raise InputError(
            f"run {run_id} does not wait for a signal {name!r}; it waits for: {', '.join(awaited) or 'none'}"
        )
    first = rt.store.put_signal(run_id, name, payload)
    _, stored = rt.store.get_signal(run_id, name)
    states = rt.state.step_states(run_id)
    for node in graph.steps.values():
        if node.kind == "signal" and node.spec.get("name") == name and states.get(node.id) == "waiting":
            deliver_signal(rt, run_id, record.generation, node.id, stored)
    return first
