"""Celery tasks of the workflow runtime (registered in every worker through ``app.conf.imports``;
shared tasks, so they exist on canvasflow's app and on any app ``init_app`` adopted, whichever
was current when this module was first imported).

* ``canvasflow.start``        start a workflow by name with JSON inputs: a backend service
                              sends this plain message without importing any step code
* ``canvasflow.step_failed``  the link_error errback every dispatched step carries
* ``canvasflow.chunk``        one chunk of a map step: the mapper applied to each item
* ``canvasflow.map``, ``canvasflow.flatten``  the same map under plain Celery (no canvasflow
                              run): a chord of chunks, flattened, so a pattern's canvas runs anywhere
* ``canvasflow.aggregate``    the join of a ``parallel_capability`` (runtime/parallel.py)
* ``canvasflow.send_signal``  a step sending a signal to a run (``send_signal(...)``'s task)
* ``canvasflow.sleep``        a durable timer's name only: a sleep step sends no message (the
                              timer service wakes it); run outside a canvasflow run, it refuses
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task, chord, group, shared_task

from canvasflow.config.celery_app import START_TASK, current_app
from canvasflow.config.errors import CanvasflowError, DefinitionError, InputError, StartRefused
from canvasflow.workers.step import StepTask, step
from canvasflow.workflows import worker_hooks  # noqa: F401  (a worker's signal handlers, connected on import)
from canvasflow.workflows.authoring.conversation import UNSET
from canvasflow.workflows.runs.lifecycle import send_signal, start_child, start_run
from canvasflow.workflows.runtime import failure
from canvasflow.workflows.runtime.executor import DEFERRED
from canvasflow.workflows.runtime.parallel import combine
from canvasflow.workflows.runtime.wire import (
    AGGREGATE_TASK,
    CHUNK_TASK,
    ERRBACK_TASK,
    HEADER,
    MAP_TASK,
    SEND_SIGNAL_TASK,
    SIGNAL_TASK,
    SLEEP_TASK,
    WORKFLOW_TASK,
)

log = structlog.get_logger("canvasflow.worker")


@shared_task(name=START_TASK, acks_late=True, throws=(StartRefused,), max_retries=0)
def start_workflow(
    workflow: Any,
    inputs: Any = None,
    version: Any = None,
    key: Any = None,
    tags: Any = None,
    priority: Any = None,
) -> dict[str, Any]:
    """Start ``workflow``; returns ``{"run_id": ...}``. ``priority``: 0..9, 9 first.

    A refused message (unknown workflow, invalid inputs, arguments of the wrong type) fails the
    task with :class:`StartRefused` and its reason: the sender's result, the result backend and
    Flower show a FAILURE, the worker logs it at WARNING, and it is not retried.
    With ``key``, a redelivered or repeated message returns the run the key already has."""
    try:
        _check_start_types(workflow, inputs, version, key, tags)
        run_id = start_run(
            workflow, inputs or {}, version=version, key=key, tags=tags or (), priority=priority
        )
        return {"run_id": run_id}
    except CanvasflowError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("start refused", workflow=repr(workflow)[:200], reason=reason)
        raise StartRefused(f"canvasflow.start refused: {reason}") from None


def _check_start_types(workflow: Any, inputs: Any, version: Any, key: Any, tags: Any) -> None:
    if not isinstance(workflow, str) or not workflow:
        raise InputError(f"workflow must be a workflow name (a string), got {workflow!r:.200}")
    if inputs is not None and not isinstance(inputs, dict):
        raise InputError(f"inputs must be a JSON object, got {type(inputs).__name__}")
    if version is not None and not isinstance(version, str):
        raise InputError(f"version must be a string, got {version!r:.200}")
    if key is not None and not isinstance(key, str):
        raise InputError(f"key must be a string, got {key!r:.200}")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise InputError(f"tags must be a list of strings, got {tags!r:.200}")


@shared_task(name=ERRBACK_TASK)
def step_failed(request: Any, exc: BaseException, traceback: Any) -> None:
    """link_error errback: journal the failure, move the run, call author errbacks, roll back."""
    failure.step_failed(request, exc, traceback)


@shared_task(name=CHUNK_TASK, base=StepTask)
def run_chunk(mapper: dict[str, Any], items: list[Any]) -> list[Any]:
    """Apply the mapper to each item, in this process (one message for the whole chunk)."""
    sig = current_app().signature(mapper)
    task = current_app().tasks[sig.task]
    done: list[Any] = []
    try:
        for item in items:
            done.append(task.run(item, *sig.args, **sig.kwargs))
    except Exception as exc:
        exc.canvasflow_partial = done  # type: ignore[attr-defined]  # completed items, for undo
        raise
    return done


@shared_task(name=MAP_TASK, bind=True)
def plain_map(self: Task, items: list[Any], mapper: dict[str, Any], chunk_size: int) -> Any:
    """Plain-Celery fallback of a map step: replace it by a chord of chunks, flattened."""
    size = max(int(chunk_size), 1)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    if not chunks:
        return []
    header = group(run_chunk.si(mapper, c) for c in chunks)
    raise self.replace(chord(header, flatten.s()))


@shared_task(name="canvasflow.flatten")
def flatten(parts: list[list[Any]]) -> list[Any]:
    return [v for part in parts for v in part]


@shared_task(name=SIGNAL_TASK)
def wait_signal(*_: Any, **__: Any) -> None:
    raise DefinitionError("wait_signal only runs inside a canvasflow run (start it with canvasflow)")


@shared_task(name=SLEEP_TASK)
def sleep_step(*_: Any, **__: Any) -> None:
    raise DefinitionError("a sleep step only runs inside a canvasflow run (start it with canvasflow)")


@shared_task(name=WORKFLOW_TASK, base=StepTask, bind=True)
def subworkflow(
    self: Task, *args: Any, workflow: str, inputs: dict[str, Any] | None = None, result_as: str | None = None
) -> Any:
    """Start the child run of a sub-workflow step; the child's result completes the step."""
    ref = self.request.get(HEADER)
    if not ref:
        raise DefinitionError("a sub-workflow step only runs inside a canvasflow run")
    values = dict(inputs or {})
    if args and result_as:
        values[result_as] = args[0]
    start_child(
        workflow, values, parent_run_id=ref["run"], parent_step=ref["step"], parent_gen=int(ref["gen"])
    )
    return DEFERRED


@step(name=AGGREGATE_TASK, capability="default")
def aggregate(results: list[Any], engines: list[str], how: str) -> Any:
    """The join of a ``parallel_capability``: the members' results combined as ``how`` says."""
    return combine(results, engines, how)


@shared_task(name=SEND_SIGNAL_TASK, base=StepTask)
def send_signal_step(
    *parents: Any, name: str, run_id: str | None = None, payload: Any = UNSET
) -> dict[str, Any]:
    """Send the signal; returns ``{"run_id", "name", "applied"}`` (``applied`` False: it was sent before)."""
    previous = parents[0] if parents else None
    if run_id is None:
        run_id = previous
        if not isinstance(run_id, str):
            raise InputError(
                f"send_signal({name!r}): no run id given and the previous result {run_id!r} is not one"
            )
    value = previous if payload == UNSET else payload
    return {"run_id": run_id, "name": name, "applied": send_signal(run_id, name, value)}
