"""An engine worker takes over steps another engine of its capability cannot run in time.

After each heartbeat (:mod:`canvasflow.workers.heartbeat`), a worker serving engine ``me``
looks at the other engines of its capability whose resources ``me`` covers (so any step they
could take, it can: ``requires`` still holds):

* an engine with **no live worker**: every step queued on it moves to ``me``'s queue
  (``taken over from <engine>``); a step the dead worker was running comes back to that queue
  (RabbitMQ at once, Redis after the visibility timeout) and is taken over then;
* with ``route_timeout`` set and ``me`` idle: the oldest step of a **live** engine's queue, once
  it waited longer than the timeout (one per beat; ``queued on <engine> longer than ...``).

The message keeps its task id and is re-addressed: queue, and a route naming ``me``, the
reason and the engines tried. Both brokers take it in two moves that a crash can only
duplicate, never lose, and the step's claim makes a duplicate harmless:

* **Redis**: LMOVE to a staging list of this worker (two workers never both take one), then
  push to our queue and drop from staging in one transaction; what a crash left staged is
  moved on the next beat;
* **RabbitMQ**: ``basic_get`` without auto-ack, publish to our queue (publisher confirms),
  then ack; a crash in between requeues the original. To read a live engine's oldest step
  without taking it, it is fetched and rejected back to the head of its queue when it is young.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import redis
import structlog

from canvasflow.config.brokers import broker_kind
from canvasflow.workers.beats import Serving
from canvasflow.workers.engines import Engine, registry
from canvasflow.workers.routing.decisions import readdressed
from canvasflow.workers.routing.live import read_live

log = structlog.get_logger("canvasflow.routing")
LIMIT = 100  # steps moved per beat at most


class Mover(Protocol):
    """One broker's way of moving queued step messages to another engine's queue."""

    def move_all(self, src: Engine, me: Engine, reason: str, limit: int) -> int: ...
    def move_oldest_if_older(self, src: Engine, me: Engine, seconds: float, reason: str) -> int: ...


def take_over(
    mover: Mover,
    live: set[str],
    mine: list[str],
    route_timeout: float | None = None,
    idle: bool = False,
    limit: int = LIMIT,
) -> int:
    """Move the steps of dead engines (and, idle, one past ``route_timeout``) to our engines."""
    moved = 0
    for key in mine:
        me = registry.get(key)
        if me is None:
            continue
        for other in registry.of(me.capability):
            if other.key == key or not me.satisfies(dict(other.resources)):
                continue
            if other.key in live:
                if route_timeout is not None and idle:
                    reason = f"queued on {other.key} longer than route_timeout ({route_timeout:g}s)"
                    if mover.move_oldest_if_older(other, me, route_timeout, reason):
                        moved += 1
                        idle = False
                continue
            taken = mover.move_all(
                other, me, f"taken over from {other.key}: no live worker there", limit - moved
            )
            moved += taken
            if taken:
                log.warning(
                    "took over steps queued on an engine with no live worker", engine=other.key, moved=taken
                )
    return moved


def readdressed_route(headers: dict[str, Any], me: Engine, reason: str) -> None:
    """Point the canvasflow route in a message's headers at ``me`` (in place)."""
    ref = headers.get("canvasflow") or {}
    old = ref.get("route")
    if old:  # the old decision goes to the route's past, "taken over" or "timed out"
        ref["route"] = readdressed(old, me.key, me.queue, reason, round(time.time(), 3))


def waited(headers: dict[str, Any] | None) -> float:
    """Seconds since the router published this message (0 when it was not routed)."""
    try:
        at = (headers or {})["canvasflow"]["route"]["at"]
        return time.time() - float(at)
    except (KeyError, TypeError, ValueError):
        return 0.0


# -- Redis ---------------------------------------------------------------------------------------
class RedisMover:
    def __init__(self, broker: redis.Redis, prefix: str, hostname: str) -> None:
        self.broker = broker
        self.staging = f"{prefix}:eng:moving:{hostname}"

    def restage(self, me: Engine) -> int:
        """What a crash left in our staging list goes on to our queue."""
        return sum(
            self._readdress(raw, me, "taken over after a restart")
            for raw in self.broker.lrange(self.staging, 0, -1)
        )

    def move_all(self, src: Engine, me: Engine, reason: str, limit: int) -> int:
        moved = 0
        while moved < limit and (got := self.broker.lmove(src.queue, self.staging, "RIGHT", "LEFT")):
            moved += self._readdress(got, me, reason)
        return moved

    def move_oldest_if_older(self, src: Engine, me: Engine, seconds: float, reason: str) -> int:
        oldest = self.broker.lindex(src.queue, -1)
        if oldest is None or waited(_headers(oldest)) <= seconds:
            return 0
        got = self.broker.lmove(src.queue, self.staging, "RIGHT", "LEFT")
        return 0 if got is None else self._readdress(got, me, reason)

    def _readdress(self, raw: Any, me: Engine, reason: str) -> int:
        message = json.loads(raw)
        message.setdefault("properties", {}).setdefault("delivery_info", {}).update(
            exchange=me.queue, routing_key=me.queue
        )
        readdressed_route(message.get("headers") or {}, me, reason)
        with self.broker.pipeline() as p:
            p.lpush(me.queue, json.dumps(message))
            p.lrem(self.staging, 1, raw)
            p.execute()
        return 1


def _headers(raw: Any) -> dict[str, Any] | None:
    try:
        found = json.loads(raw).get("headers")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, dict) else None


# -- RabbitMQ (AMQP) -------------------------------------------------------------------------------
class AmqpMover:
    def __init__(self, app: Any) -> None:
        self.app = app

    def move_all(self, src: Engine, me: Engine, reason: str, limit: int) -> int:
        return self._move(src, me, reason, limit, None)

    def move_oldest_if_older(self, src: Engine, me: Engine, seconds: float, reason: str) -> int:
        return self._move(src, me, reason, 1, seconds)

    def _move(self, src: Engine, me: Engine, reason: str, limit: int, older_than: float | None) -> int:
        from amqp.exceptions import NotFound
        from kombu.exceptions import ChannelError

        moved = 0
        with self.app.pool.acquire(block=True) as conn:  # pooled: no new connection every beat
            channel = conn.channel()
            try:
                while moved < limit:
                    got = channel.basic_get(queue=src.queue, no_ack=False)
                    if got is None:
                        break
                    headers = dict(got.properties.get("application_headers") or {})
                    if older_than is not None and waited(headers) <= older_than:
                        channel.basic_reject(got.delivery_tag, requeue=True)  # back to the head
                        break
                    readdressed_route(headers, me, reason)
                    channel.basic_publish(_copy(got, headers), exchange=me.queue, routing_key=me.queue)
                    channel.basic_ack(got.delivery_tag)
                    moved += 1
            except (NotFound, ChannelError):  # the queue was never declared: nothing queued there
                pass
            finally:
                try:
                    channel.close()
                except Exception:  # RabbitMQ closes it itself after NOT_FOUND
                    log.debug("takeover channel already closed")
        return moved


def _copy(got: Any, headers: dict[str, Any]) -> Any:
    """The same message (body, content type, delivery mode, ids) with new headers."""
    from amqp.basic_message import Message

    props = {k: v for k, v in got.properties.items() if k != "application_headers"}
    return Message(got.body, application_headers=headers, **props)


# -- wiring: the heartbeat's after_beat of an engine worker -----------------------------------------
def after_beat(rt: Any, hostname: str, engines: list[str]) -> Callable[[Serving], None] | None:
    """The takeover an engine worker runs after each beat, for the broker it uses (None: no engines)."""
    if not engines:
        return None
    s = rt.settings
    kind = broker_kind(s.broker_url)
    restage: Callable[[Engine], int] | None = None
    mover: Mover
    if kind == "redis":
        redis_mover = RedisMover(
            redis.Redis.from_url(s.broker_url, socket_connect_timeout=s.broker_timeout),
            s.key_prefix,
            hostname,
        )
        mover, restage = redis_mover, redis_mover.restage
    elif kind == "amqp":
        mover = AmqpMover(rt.app)
    else:
        return None

    def run(serving: Serving) -> None:
        if restage is not None:
            for key in engines:
                me = registry.get(key)
                if me is not None:
                    restage(me)
        live = {b["engine"] for b in read_live(rt.redis, s.key_prefix, [])[0]}
        take_over(
            mover,
            live,
            engines,
            route_timeout=s.route_timeout,
            idle=serving.inflight < serving.consumers,
        )

    return run
