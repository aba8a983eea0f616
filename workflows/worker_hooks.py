"""What a canvasflow worker does at Celery's worker signals: migrate the journal at start,
switch task events on, warm each pool process, run the liveness threads (heartbeat; the sweep
and the timer service in control workers), fail a step whose task the worker lacks or whose
message expired or was revoked from outside, and flush the journal when a process stops.

Connected when :mod:`canvasflow.workflows.tasks` is imported, which every worker does.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import structlog
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

from canvasflow.config.queues import engines_in
from canvasflow.config.settings import get_settings, redact
from canvasflow.workers.heartbeat import HeartbeatThread
from canvasflow.workers.routing.takeover import after_beat
from canvasflow.workflows.runs.sweep_thread import SweepThread
from canvasflow.workflows.runs.timer_service import TimerThread
from canvasflow.workflows.runtime import failure, taskevents
from canvasflow.workflows.runtime.context import current_runtime, runtime, warm
from canvasflow.workflows.runtime.control import step_settled
from canvasflow.workflows.runtime.fusion import orphans
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
