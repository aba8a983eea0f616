"""kombu's Redis transports, made to survive a broker restart in a worker.

When the broker connection drops, Celery's consumer ``collect()``s the connection, which
detaches the transport from it (``transport.client = None``), and then ``close()``s it. A channel
that the collect did not close (its close gave up on the lost BRPOP, and the loop that closes
every channel stopped at another channel's failing ``queue_delete``) is closed then; closing
restores its unacknowledged messages through a new connection pool, and building that pool reads
the detached ``transport.client``: ``AttributeError: 'NoneType' object has no attribute
'hostname'``. That is no connection error, so Celery calls it unrecoverable and the worker exits.
It takes a step running (an unacknowledged message), a BRPOP outstanding (a prefetch not used up,
as with a retry waiting for its countdown) and the broadcast (pidbox) channel failing first:
docs/reliability.md has the reproduction for kombu's tracker.

These transports keep the address a channel was opened with, so the late close builds its pool
as the first did: the restore reaches Redis when it is back, or fails with a connection error
Celery ignores (the message then stays in kombu's unacked hash, and the sweep or the visibility
timeout brings it back). Nothing else changes. ``config.brokers`` selects them for Redis URLs.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class _KeepsAddress:
    """A channel that can still build a connection pool after its transport was detached."""

    connection: Any

    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        self._address = connection.client  # the kombu Connection: host, port, credentials, options
        super().__init__(connection, *args, **kwargs)  # type: ignore[call-arg]

    def _get_pool(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is not None:
            return super()._get_pool(asynchronous)  # type: ignore[misc]
        transport.client = self._address  # for the pool's parameters only, then detached again
        try:
            return super()._get_pool(asynchronous)  # type: ignore[misc]
        finally:
            transport.client = None


class Channel(_KeepsAddress, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(_KeepsAddress, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


TRANSPORTS = {
    "redis": f"{__name__}:Transport",
    "rediss": f"{__name__}:Transport",
    "sentinel": f"{__name__}:SentinelTransport",
}
