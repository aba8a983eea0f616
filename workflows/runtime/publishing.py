"""Publishing many step messages at once: one producer, pipelined (Redis) or confirmed in bulk.

``app.send_task`` on its own acquires a producer from the pool, publishes, and on Redis
opens a client and makes one round trip for the message and one for its ``task-sent``
event; on RabbitMQ (publisher confirms on) it waits for the broker's confirm of each
message. When a run starts with a 1,000-member group, or a step releases many successors,
that is 1,000 round trips in a row. Inside :func:`batch` every ``send_step`` goes through
one producer instead:

* Redis: kombu's publish batch (``Producer.batch``) buffers the ``LPUSH`` of each message and
  the ``PUBLISH`` of its event in one non-transactional pipeline, executed every
  ``publish_batch_size`` messages and when the batch closes. The wire format is kombu's own.
* RabbitMQ: the messages go out on one channel in confirm mode without waiting after each;
  the batch then waits once until the broker confirmed all of them (a nack raises).
* Other transports publish each message at once, through the one producer.

Messages are on the broker when the ``with`` block ends without error. When the block
raises, what was sent before the error is still published (as it would have been without
the batch), then the error propagates.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from celery import Celery
from kombu import Exchange, Producer, Queue

from canvasflow.config.brokers import broker_kind

_dispatchers: dict[tuple[int, int, str], Any] = {}


class _SentEvents:
    """Celery's ``task-sent`` events, the same fields, published through the batch's producer
    with the event exchange declared once per batch (Celery declares it for every event)."""

    def __init__(self, app: Celery, producer: Producer) -> None:
        # the dispatcher stamps events with its process id; its exchange's type is the transport's
        key = (id(app), os.getpid(), producer.connection.transport.driver_type)
        if key not in _dispatchers:
            _dispatchers[key] = app.events.Dispatcher(connection=producer.connection, enabled=False)
        self._dispatcher = _dispatchers[key]
        self._declared = False

    def publish(self, type: str, fields: dict[str, Any], producer: Producer, **_: Any) -> None:
        d = self._dispatcher
        producer.publish(
            d._prepare_event(type, fields),
            routing_key=type.replace("-", "."),
            exchange=d.exchange.name,
            retry=False,
            declare=[] if self._declared or declared(producer, d.exchange) else [d.exchange],
            serializer=d.serializer,
            headers=d.headers,
            delivery_mode=d.delivery_mode,
        )
        self._declared = True


class _Batch:
    def __init__(self, app: Celery, producer: Producer, pending: Any = None) -> None:
        self.producer = producer
        self.events = _SentEvents(app, producer)
        self.declared: set[tuple[str, str | None]] = set()
        self.pending = pending  # kombu's publish batch (Redis), flushed by flush()


_current: ContextVar[_Batch | None] = ContextVar("canvasflow_publish_batch", default=None)


def send_options(task: str, queue: str | None) -> dict[str, Any]:
    """Extra ``send_task`` options for a message of ``task`` (to ``queue``, if named).

    Outside a batch: none. Inside: the batch's producer, no publish retry (publishing only
    buffers; the pipeline's execution is where a failure shows), and the queue declared by
    the first message of each (task, queue) only: the route of a task name does not change;
    not even by that one when the connection declared the queue already (kombu's own record).
    """
    current = _current.get()
    if current is None:
        return {}
    options: dict[str, Any] = {
        "producer": current.producer,
        "retry": False,
        "event_dispatcher": current.events,
    }
    key = (task, queue)
    if key in current.declared:
        options["declare"] = []
    else:
        current.declared.add(key)
        if queue is not None and declared(current.producer, _queue(queue)):
            options["declare"] = []
    return options


def declared(producer: Producer, entity: Queue | Exchange) -> bool:
    """Whether ``producer``'s connection declared ``entity`` already: the record kombu's
    ``maybe_declare`` keeps (and forgets on reconnecting), read without the copy of the entity
    it binds first. A queue or exchange kombu does not record (auto-delete) is declared again."""
    entities: set[int] | None = getattr(producer.connection, "declared_entities", None)
    return bool(entities) and entity.can_cache_declaration and hash(entity) in (entities or ())


_queues: dict[str, Queue] = {}


def _queue(name: str) -> Queue:
    """A queue named ``name``, to look up in kombu's record (which knows entities by name)."""
    found = _queues.get(name)
    if found is None:
        found = _queues[name] = Queue(name)
    return found


@contextlib.contextmanager
def batch(app: Celery, size: int, count: int = 2) -> Iterator[None]:
    """Send the ``count`` (about) messages published inside through one producer, in batches
    of ``size``. On Redis even one message gains (it and its event share a round trip); on
    RabbitMQ a batch of one would cost a channel of its own, so it is published as usual."""
    if _current.get() is not None or (count < 2 and broker_kind(app.conf.broker_url) == "amqp"):
        yield  # nested (the outer batch publishes), or not worth a batch
        return
    with app.producer_or_acquire() as pooled:
        if pooled.connection.transport.driver_type == "amqp":
            with _amqp_confirmed(pooled) as prod:
                token = _current.set(_Batch(app, prod))
                try:
                    yield
                finally:
                    _current.reset(token)
            return
        # a message is an LPUSH plus the PUBLISH of its task-sent event: 2 commands
        with pooled.batch(max_size=2 * size) as pending:
            token = _current.set(_Batch(app, pooled, pending))
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):  # what went before the error still goes out
                    pending.flush()
                raise
            finally:
                _current.reset(token)


def flush() -> None:
    """Put what the current batch holds on the broker now (Redis), e.g. a fan-out's first
    messages, so that other workers start on them while the rest is being prepared."""
    current = _current.get()
    if current is not None and current.pending is not None:
        current.pending.flush()


@contextlib.contextmanager
def _amqp_confirmed(pooled: Producer) -> Iterator[Producer]:
    """A producer on a fresh channel in confirm mode; on exit, wait for every confirm at once."""
    from amqp import spec
    from amqp.exceptions import MessageNacked

    connection = pooled.connection
    channel: Any = connection.channel()
    confirms = getattr(connection.connection, "confirm_publish", False)
    published = [0]
    acked: set[int] = set()  # delivery tags of this fresh channel count from 1
    floor = [0]  # every tag up to here is acked (a multiple ack covers all before it)
    nacked: list[int] = []

    def on_ack(tag: int, multiple: bool) -> None:
        if multiple and tag > floor[0]:
            acked.update(range(floor[0] + 1, tag + 1))
            floor[0] = tag
        acked.add(tag)

    def on_nack(tag: int, multiple: bool) -> None:
        nacked.append(tag)

    if confirms:
        channel.confirm_select()
        channel._confirm_selected = True
        unconfirmed = channel._basic_publish

        def publish(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("confirm_timeout", None)
            published[0] += 1
            return unconfirmed(*args, **kwargs)

        channel.basic_publish = publish
        channel.events["basic_ack"].add(on_ack)
        channel.events["basic_nack"].add(on_nack)
    try:
        prod = Producer(channel, exchange=pooled.exchange, serializer=pooled.serializer, auto_declare=False)
        try:
            yield prod
        finally:
            while confirms and not nacked and len(acked) < published[0]:
                channel.wait(
                    [spec.Basic.Ack, spec.Basic.Nack],
                    timeout=connection.transport_options.get("confirm_timeout", 30),
                )
        if nacked:
            raise MessageNacked(f"the broker refused {len(nacked)} of {published[0]} messages")
    finally:
        with contextlib.suppress(Exception):
            channel.close()
