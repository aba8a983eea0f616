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

import time
from typing import Any

import redis
import structlog
from celery import Task, chord, group, shared_task
from celery.signals import (
    task_revoked,
    task_unknown,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from celery.worker import state as worker_state
from sqlalchemy.exc import InterfaceError, OperationalError

from canvasflow.config.celery_app import START_TASK, current_app
from canvasflow.config.errors import CanvasflowError, DefinitionError, InputError, StartRefused
from canvasflow.config.queues import engines_in
from canvasflow.config.settings import get_settings, redact
from canvasflow.workers.heartbeat import HeartbeatThread
from canvasflow.workers.routing.takeover import after_beat
from canvasflow.workers.step import StepTask, step
from canvasflow.workflows.authoring.conversation import UNSET
from canvasflow.workflows.runs.lifecycle import send_signal, start_child, start_run
from canvasflow.workflows.runs.sweep_thread import SweepThread
from canvasflow.workflows.runs.timer_service import TimerThread
from canvasflow.workflows.runtime import failure, taskevents
from canvasflow.workflows.runtime.context import current_runtime, runtime, warm
from canvasflow.workflows.runtime.control import step_settled
from canvasflow.workflows.runtime.executor import DEFERRED
from canvasflow.workflows.runtime.fusion import orphans
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
from canvasflow.workflows.store.revision import ensure_schema
from canvasflow.workflows.store.sql import make_engine

log = structlog.get_logger("canvasflow.worker")


@worker_init.connect
def _migrate(**_: Any) -> None:
    """Bring the journal's schema to head once, in the worker's main process, before forking.

    While the database does not answer, wait and try again (saying why): a worker that
    cannot journal must not report ready and take steps."""
    s = get_settings()
    while True:
        engine = make_engine(s.database_url)
        try:
            ensure_schema(engine)
            return
        except (OperationalError, InterfaceError, OSError) as exc:  # unreachable; a bad URL raises
            log.warning(
                "journal database unreachable; the worker waits for it before taking steps",
                database=redact(s.database_url),
                error=str(exc).splitlines()[0],
                retry_in=s.startup_retry,
            )
            time.sleep(s.startup_retry)
        finally:
            engine.dispose()


@worker_init.connect
def _task_events(sender: Any = None, **_: Any) -> None:
    """Whether this worker sends task events (``-E``, ``worker_send_task_events``), recorded in
    its main process before the pool forks: the steps fused into a delivery send theirs then only
    (runtime/taskevents.py)."""
    chosen = getattr(sender, "task_events", None)
    if chosen is not None:
        taskevents.record(bool(chosen))


@worker_process_init.connect
def _warm(**_: Any) -> None:
    """Open a pool process's connections before its first step; a few quick tries, then lazily.

    (Celery kills a pool process that is not up within ``worker_proc_alive_timeout``, so this
    must not wait long: the main process already waited for the database in ``_migrate``.)"""
    for attempt in range(3):
        try:
            warm()
            return
        except Exception as exc:
            log.warning(
                "pool process could not reach Redis or the journal database yet",
                error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                attempt=attempt + 1,
            )
            time.sleep(0.5)


_threads: list[Any] = []


@worker_ready.connect
def _start_liveness(sender: Any = None, **_: Any) -> None:
    """Heartbeats from every worker node; the recovery sweep and the timer service (durable timers)
    on those consuming the control queue."""
    if _threads:
        return  # a reconnect fires this again
    rt = runtime()
    hostname = getattr(sender, "hostname", None) or "unknown"
    engines = engines_in([q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])])
    _threads.append(HeartbeatThread(rt, hostname, sender, after_beat(rt, hostname, engines)))
    consumed = {q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])}
    if rt.settings.control_queue in consumed:
        _threads.append(SweepThread(rt, hostname))
        _threads.append(TimerThread(rt, hostname))
    for t in _threads:
        t.start()
    log.info("liveness started", hostname=hostname, sweep=len(_threads) > 1, engines=engines)


@worker_shutdown.connect
def _stop_liveness(**_: Any) -> None:
    for t in _threads:
        t.stop()
    _threads.clear()


@task_unknown.connect
def _unknown(sender: Any = None, message: Any = None, name: str | None = None, **_: Any) -> None:
    """A step whose task this worker does not have fails, saying so (the message is dead-lettered)."""
    ref = failure.step_ref(message)
    if ref is not None:
        failure.fail_unregistered(ref, name, getattr(sender, "hostname", None))


@task_revoked.connect
def _revoked(sender: Any = None, request: Any = None, expired: bool = False, **_: Any) -> None:
    """A step revoked on purpose (``revoke`` -- the rollback's ``revoke`` in-flight policy -- or an
    expired message) will not complete: mark it so, and the rollback may go on. While its run
    is running (an expired message, or a revoke from outside canvasflow), the run cannot go on
    without it: the step fails (StepRevoked) and the run rolls back.

    Celery also reports a task it cancelled itself, on a broker connection loss
    (``worker_cancel_long_running_tasks_on_connection_loss``), as revoked. Such a step was not
    revoked: it is left ``running``; no live worker holds it any more, so the recovery sweep
    dispatches it again."""
    ref = failure.step_ref(request)
    if not ref:
        return
    if not expired and getattr(request, "id", None) not in worker_state.revoked:
        log.warning("step cancelled by Celery (not revoked): it will be dispatched again", **ref)
        return
    rt = runtime()
    unit = ref["step"] if ref.get("chunk") is None else f"{ref['step']}#{ref['chunk']}"
    try:
        stopped = rt.state.mark_revoked(ref["run"], unit)  # not a parallel_capability loser, completed first
        for fused in orphans(rt, ref["run"], request.id):  # steps running inside this delivery
            rt.state.mark_revoked(ref["run"], fused)
        if stopped and rt.state.status(ref["run"]) in ("running", "waiting"):
            failure.fail_revoked(ref, getattr(sender, "name", None), expired=expired)
        else:
            step_settled(rt, ref["run"])
    except (redis.RedisError, OSError) as exc:
        log.warning("revoked step not recorded: state Redis unreachable", error=str(exc), **ref)


@worker_process_shutdown.connect
def _flush_journal(**_: Any) -> None:
    rt = current_runtime()
    if rt is not None and "journal" in rt.__dict__:
        rt.journal.flush()


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
