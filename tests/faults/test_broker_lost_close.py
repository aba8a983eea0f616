"""The close that killed workers on a Redis restart, replayed step by step on a real redis-server.

Celery's consumer, on a lost broker connection, calls ``connection.collect()`` and then
``connection.close()`` (celery/worker/consumer/consumer.py, on_connection_error_after_connected).
With a step running (an unacknowledged message), a BRPOP outstanding and a broadcast queue on a
second channel, kombu's own Redis transport raises AttributeError from that close, which Celery
treats as unrecoverable; canvasflow's transport (config/redis_transport.py) closes cleanly, and
the unacknowledged message comes back once Redis does."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from kombu.common import ignore_errors

from canvasflow.config.brokers import redis_transport
from tests.faults.outage import PrivateRedis

pytestmark = [pytest.mark.redis, pytest.mark.faults]

KOMBU = "kombu.transport.redis:Transport"


def lose_connection_mid_step(url: str, server: PrivateRedis, transport: str) -> Connection:
    """A consumer holding one unacknowledged message with a BRPOP out, Redis stopped under it,
    then the consumer's own clean-up: collect, then close (errors Celery ignores are ignored)."""
    queue = Queue("steps", Exchange("steps"), "steps")
    with Connection(url) as producer:
        producer.Producer().publish({"n": 0}, exchange=queue.exchange, routing_key="steps", declare=[queue])
    conn = Connection(url, transport=transport, transport_options={"visibility_timeout": 1})
    channel = conn.default_channel
    held: list[object] = []
    consumer = conn.Consumer([queue], channel=channel, callbacks=[lambda body, message: held.append(message)])
    consumer.qos(prefetch_count=1)
    consumer.consume()
    conn.drain_events(timeout=5)
    assert len(held) == 1, "the first message is being worked on"
    broadcast = conn.channel()  # as Celery's remote-control (pidbox) queue: fanout, auto-delete
    pidbox = Queue("bcast.w", Exchange("bcast", "fanout"), auto_delete=True)
    conn.Consumer([pidbox], channel=broadcast).consume()
    channel.qos.prefetch_count = 2  # a retry waiting for its countdown raises the prefetch
    channel._brpop_start()  # the next BRPOP is out, waiting on an empty queue
    server.stop()
    with contextlib.suppress(Exception):  # Celery ignores every error of collect(), as here
        conn.collect(socket_timeout=0.2)
    ignore_errors(conn, conn.close)  # raises whatever is not a connection error: what kills a worker
    return conn


def test_kombu_alone_still_fails_this_close(tmp_path):
    """Pins the upstream bug: when this starts passing, kombu fixed it and our transport can go."""
    server = PrivateRedis(tmp_path / "redis", "aof").start()
    try:
        with pytest.raises(AttributeError, match="hostname"):
            lose_connection_mid_step(server.url(), server, KOMBU)
    finally:
        server.stop()


def test_canvasflow_transport_closes_cleanly_and_the_message_comes_back(tmp_path):
    server = PrivateRedis(tmp_path / "redis", "aof").start()
    try:
        transport = redis_transport(server.url())
        assert transport is not None
        lose_connection_mid_step(server.url(), server, transport)  # no exception: the worker lives

        server.start()  # appendonly: the queue and kombu's unacked hash are back
        queue = Queue("steps", Exchange("steps"), "steps")
        options = {"visibility_timeout": 1}
        with Connection(server.url(), transport=transport, transport_options=options) as conn:
            got: list[dict[str, int]] = []

            def take(body: dict[str, int], message: Any) -> None:
                got.append(body)
                message.ack()

            consumer = conn.Consumer([queue], callbacks=[take])
            with consumer:
                deadline_events = 40
                while not got and deadline_events:
                    conn.default_channel.qos.restore_visible(interval=1)  # a worker does this periodically
                    try:
                        conn.drain_events(timeout=0.5)
                    except TimeoutError:
                        deadline_events -= 1
        assert got == [{"n": 0}], "the message held when Redis went away came back"
    finally:
        server.stop()


def test_transport_is_chosen_for_redis_urls_only():
    ours = "canvasflow.config.redis_transport"
    assert redis_transport("redis://127.0.0.1:6379/0") == f"{ours}:Transport"
    assert redis_transport("rediss://example:6380/0") == f"{ours}:Transport"
    assert redis_transport("sentinel://127.0.0.1:26379") == f"{ours}:SentinelTransport"
    assert redis_transport("amqp://guest@127.0.0.1//") is None
