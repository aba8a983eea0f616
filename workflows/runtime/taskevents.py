"""Celery task events for steps that run without a message of their own, so Flower lists them.

A step fused into its predecessor's delivery, or carried by a fan-out bundle (fusion.py,
bundles.py), runs through Celery's tracer inside a pool process; the worker's main process,
which sends the task events of the messages it received, never hears of it. So the pool
process sends them itself, as the main process would for a message of the step's own:
``task-received`` (its task id, name, args and kwargs as Celery renders them, secrets masked
as in its message would be, root and parent: the delivery), ``task-started``, then
``task-succeeded`` (result, runtime), ``task-failed`` (exception, traceback) or
``task-retried``. Each carries the worker's hostname and the pool process's pid, like
Celery's own. An ignored step (its claim skipped it) gets no last event, as in Celery.

Only when the worker sends task events (``-E``, ``worker_send_task_events``): the worker's
main process records its choice at ``worker_init`` (:func:`record`), before the pool forks.
Events are batched as Celery's own worker batches its task events: one message whose body is
a list of events (routing key ``task.multi``), sent when the delivery ends (``Outbox.flush``)
or once it holds :data:`BATCH` events. Each event keeps the time it happened, so Flower shows
the real received, started and finished times; what it shows late is a fused step that is
still running (it appears when its delivery ends). Measured: one publish per event, or one
pipelined publish per step, cost 0.5 ms of every fused step on an idle core and doubled the
time of a fused chain of 100 in the benchmark; one message per delivery costs some 65 µs a
step on an idle core, 0.25 ms on the loaded bench machine (docs/operations.md). One dispatcher
per process prepares the events (its clock, pid, hostname) and one connection of the process
publishes them, without publisher confirms on RabbitMQ (waiting for each confirm made a bundle
of 5 steps overrun its 0.5 s budget on a loaded machine). A failure to publish is logged and
never fails a step.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from celery import Celery, Task
from celery.exceptions import Retry
from celery.utils.saferepr import saferepr
from celery.utils.serialization import get_pickled_exception
from kombu import Producer
from kombu.utils.encoding import safe_repr, safe_str

from canvasflow.workflows.runtime import secrets

log = structlog.get_logger("canvasflow.taskevents")

_sending: list[bool] = []  # what the worker chose (-E / worker_send_task_events), recorded at worker_init
BATCH = 24  # events a message carries at most (Celery's own buffer of task events: 24)
_dispatchers: dict[tuple[int, int, str], Any] = {}  # (app, pid, hostname) -> its event dispatcher
_producers: dict[tuple[int, int], Producer] = {}  # (app, pid) -> the producer the events go out with
_publishing = threading.Lock()  # a thread pool's threads share the process's producer


def record(send_events: bool) -> None:
    """The worker's choice, recorded by its main process before the pool processes fork
    (a worker told ``enable_events`` later, by Flower or ``celery control``, is not asked again)."""
    _sending[:] = [bool(send_events)]


def enabled(app: Celery, task: Task) -> bool:
    """Whether this worker sends task events for ``task`` (as Celery's Request asks)."""
    on = _sending[0] if _sending else bool(app.conf.worker_send_task_events)
    return on and bool(getattr(task, "send_events", True))


def _dispatcher(app: Celery, hostname: str) -> Any:
    key = (id(app), os.getpid(), hostname)
    d = _dispatchers.get(key)
    if d is None:  # no connection of its own: it prepares events, the pool's producer sends them
        d = _dispatchers[key] = app.events.Dispatcher(connection=None, hostname=hostname, enabled=False)
    return d


def _producer(app: Celery) -> Producer:
    key = (id(app), os.getpid())
    producer = _producers.get(key)
    if producer is None:  # a connection of this process's own, without publisher confirms (RabbitMQ):
        # a lost event loses no step, and waiting for a confirm of each would slow every step
        connection = app.connection_for_write(transport_options={"confirm_publish": False})
        producer = _producers[key] = Producer(connection, auto_declare=False)
    return producer


def _drop_producer(app: Celery) -> None:
    producer = _producers.pop((id(app), os.getpid()), None)
    if producer is not None:
        with contextlib.suppress(Exception):
            producer.connection.release()


def call_repr(app: Celery, task: Task, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str]:
    """``args`` and ``kwargs`` as Celery renders them in a message (``argsrepr``), secrets masked."""
    shown = secrets.masked(task, args, kwargs)
    if shown is not None:  # as sending.send_step renders a step's message
        return repr(shown[0]), repr(shown[1])
    amqp = app.amqp
    return saferepr(args, amqp.argsrepr_maxsize), saferepr(kwargs, amqp.kwargsrepr_maxsize)


def safely(call: Callable[..., None], *args: Any) -> None:
    """Call ``call``; an error is logged, never raised into the step (its events are only a view)."""
    try:
        call(*args)
    except Exception:
        log.exception("task events of a fused step not prepared")


class Outbox:
    """The events of one delivery's fused steps, prepared and not yet published."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.dispatcher: Any = None  # of the worker's hostname: every event of a delivery has it
        self.pending: list[Any] = []

    def add(self, hostname: str, type: str, **fields: Any) -> None:
        d = self.dispatcher = _dispatcher(self.app, hostname)
        self.pending.append(d._prepare_event(type, fields))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Publish the events waiting as one message (a list: Celery's own batched ``task.multi``
        form, which Flower's receiver reads); never raises (a lost event loses no step)."""
        if not self.pending:
            return
        batch, self.pending, d = self.pending, [], self.dispatcher
        with _publishing:
            try:
                _producer(self.app).publish(
                    batch,
                    routing_key="task.multi",
                    exchange=d.exchange.name,
                    retry=False,
                    declare=[d.exchange],  # kombu declares it once per connection
                    serializer=d.serializer,
                    headers=d.headers,
                    delivery_mode=d.delivery_mode,
                )
            except Exception as exc:  # the next batch connects again
                _drop_producer(self.app)
                log.warning("task events of fused steps not sent", count=len(batch), error=str(exc)[:200])


class Step:
    """One step run inside another's delivery: its events, from received to its outcome."""

    def __init__(self, outbox: Outbox, task: Task, hostname: str, task_id: str) -> None:
        self.outbox, self.task, self.hostname, self.task_id = outbox, task, hostname, task_id
        self.on = bool(hostname) and enabled(outbox.app, task)
        self.began = 0.0

    def starting(self, args: list[Any], kwargs: dict[str, Any], root_id: str | None, parent_id: str) -> None:
        """Received and started, published (with what was waiting) before the body runs."""
        self.began = time.monotonic()
        if not self.on:
            return
        shown_args, shown_kwargs = call_repr(self.outbox.app, self.task, args, kwargs)
        self.outbox.add(
            self.hostname,
            "task-received",
            uuid=self.task_id,
            name=self.task.name,
            args=shown_args,
            kwargs=shown_kwargs,
            root_id=root_id,
            parent_id=parent_id,
            retries=0,
            eta=None,
            expires=None,
        )
        self.outbox.add(self.hostname, "task-started", uuid=self.task_id)

    def ended(self, traced: Any) -> None:
        """What Celery's tracer returned (retval, info, runtime, retstr): the step's last event,
        queued for the next publish."""
        if not self.on:
            return
        _, info, runtime, retstr = traced
        if info is None:
            took = runtime if runtime is not None else time.monotonic() - self.began
            self.outbox.add(self.hostname, "task-succeeded", uuid=self.task_id, result=retstr, runtime=took)
            return
        einfo = traced[0]
        wrapped = getattr(einfo, "exception", None)
        exc = getattr(wrapped, "exc", wrapped)  # billiard's ExceptionWithTraceback around it
        if info.state == "RETRY" and isinstance(exc, Retry):
            self.outbox.add(
                self.hostname,
                "task-retried",
                uuid=self.task_id,
                exception=safe_repr(exc),
                traceback=safe_str(einfo.traceback),
            )
            # now: the retry's own message is on its way, and Flower takes a late RETRY for the
            # task's state, even after that message's SUCCESS
            self.outbox.flush()
        elif info.state == "FAILURE" and wrapped is not None:
            self.outbox.add(
                self.hostname,
                "task-failed",
                uuid=self.task_id,
                exception=safe_repr(get_pickled_exception(wrapped)),
                traceback=einfo.traceback,
            )
