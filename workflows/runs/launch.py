"""What starting a run writes, and the checks before it: the journal rows and Redis state of a
new run (:func:`launch_of`), the state Redis's check (:func:`check_state`), the definition
journaled once per version. Shared by ``start`` (lifecycle.py) and ``start_many`` (batch.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from canvasflow.config.errors import StateUnavailable
from canvasflow.config.settings import redact
from canvasflow.workflows.authoring.definition import Workflow
from canvasflow.workflows.runs.records import run_labels
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.events import CREATED
from canvasflow.workflows.runtime.graph import StepGraph, StepNode
from canvasflow.workflows.runtime.secrets import for_journal
from canvasflow.workflows.runtime.wire import journaled_task


@dataclass(frozen=True)
class Launch:
    """What starting one run writes: its journal rows (``create_run``'s keywords) and its Redis
    state (``init_run``'s)."""

    journal: dict[str, Any]
    state: dict[str, Any]


def step_rows(nodes: Iterable[StepNode]) -> list[dict[str, Any]]:
    """The journal's row of each step of ``nodes``, before it runs."""
    return [
        {
            "step_id": n.id,
            "task": journaled_task(n.task, n.args),  # an action step: its action's name
            "kind": n.kind,
            "queue": n.options.get("queue"),
            "compensation": n.compensation,
        }
        for n in nodes
    ]


def launch_of(
    rt: Runtime,
    run_id: str,
    wf: Workflow,
    values: dict[str, Any],
    graph: StepGraph,
    parent_run_id: str | None = None,
    parent_step: str | None = None,
    key: str | None = None,
    tags: Sequence[str] = (),
) -> Launch:
    graph_json = graph.to_json()
    journal_graph, journal_inputs = for_journal(rt.app.tasks, graph_json, values)  # secrets masked
    rows = step_rows(graph.steps.values())
    journal = {
        "run_id": run_id,
        "workflow": wf.name,
        "version": wf.version,
        "inputs": journal_inputs,
        "graph": journal_graph,
        "steps": rows,
        "parent_run_id": parent_run_id,
        "parent_step": parent_step,
        "key": key,
        "tags": tags,
    }
    state = {
        "graph_json": json.dumps(graph_json),
        "pending": {sid: len(n.deps) for sid, n in graph.steps.items() if n.deps},
        "left": len(graph.steps),
        "labels": {**run_labels(wf.name, wf.version, parent_run_id, parent_step), CREATED: str(time.time())},
    }
    return Launch(journal, state)


def state_down(rt: Runtime, exc: BaseException) -> StateUnavailable:
    url = redact(rt.settings.redis_state_url)
    return StateUnavailable(
        f"state Redis {url} does not answer ({type(exc).__name__}: {exc}); nothing was created: "
        "start it (or set CANVASFLOW_STATE_URL to one that runs) and start the run again"
    )


STATE_SEEN_OK = 1.0  # seconds after a state write succeeded during which no PING is sent first


def check_state(rt: Runtime) -> None:
    """Refuse to create a run whose hot-path state cannot be written (one clear line).

    A PING before anything is journaled, unless this process wrote a run's state less than
    ``STATE_SEEN_OK`` seconds ago (a round trip saved per start in a busy loop): if Redis went
    down since, the state write fails and the rows just journaled are deleted (``_forget``)."""
    if time.monotonic() - rt.__dict__.get("_state_ok_at", float("-inf")) < STATE_SEEN_OK:
        return
    try:
        rt.redis.ping()
    except (redis.RedisError, OSError) as exc:
        raise state_down(rt, exc) from None


def state_written(rt: Runtime) -> None:
    """A run's state was just written: the state Redis answers (see ``check_state``)."""
    rt.__dict__["_state_ok_at"] = time.monotonic()


_recorded: set[tuple[int, str, str]] = set()


def record_definition(rt: Runtime, wf: Workflow) -> None:
    """Journal each (workflow, version) once, with its input schema, so old runs stay explainable."""
    key = (id(rt), wf.name, wf.version)
    if key not in _recorded:
        rt.store.record_definition(wf.name, wf.version, wf.inputs.model_json_schema())
        _recorded.add(key)
