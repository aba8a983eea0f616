"""The worker side of the live view: announce each engine this worker serves, every few seconds.

A worker consuming ``cap.<capability>.<engine>`` serves that engine. When it is ready, a
daemon thread in its main process writes ``<prefix>:eng:hb:<capability>/<engine>/<worker>``
(its consumers and in-flight steps) with an expiry of three intervals and adds it to the live
set; a worker that dies stops writing and its entry expires. A warm shutdown removes it at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import redis
import structlog
from celery.signals import worker_ready, worker_shutdown

from canvasflow.config.queues import CAPABILITY_PREFIX
from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.engines import Engine, registry
from canvasflow.workers.routing.live import beat_key, live_set, read_live

log = structlog.get_logger("canvasflow.routing")
ENGINE_QUEUE = re.compile(re.escape(CAPABILITY_PREFIX) + r"([a-z0-9][a-z0-9_-]*)\.([a-z0-9][a-z0-9_-]*)$")


def engines_in(queues: list[str]) -> list[str]:
    """``capability/engine`` for each engine queue among ``queues``."""
    return [f"{m[1]}/{m[2]}" for q in queues if (m := ENGINE_QUEUE.match(q))]


class Announcer:
    def __init__(
        self,
        r: redis.Redis,
        prefix: str,
        hostname: str,
        engines: list[str],
        consumers: int,
        interval: float,
        broker: redis.Redis | None = None,
    ) -> None:
        self.r, self.prefix, self.hostname = r, prefix, hostname
        self.engines, self.consumers, self.interval = engines, consumers, interval
        self.broker = broker  # a Redis broker: steps left on a dead engine's queue are taken over
        self.route_timeout: float | None = None
        self._stop = threading.Event()

    def idle(self) -> bool:
        """Fewer steps running here than this worker has consumers."""
        from celery.worker import state

        return len(state.active_requests) < self.consumers

    def members(self) -> list[str]:
        return [f"{e}/{self.hostname}" for e in self.engines]

    def beat(self) -> None:
        from celery.worker import state

        inflight = len(state.active_requests)
        ttl_ms = int(self.interval * 3 * 1000)
        with self.r.pipeline(transaction=False) as p:
            for engine, member in zip(self.engines, self.members(), strict=True):
                body = {
                    "engine": engine,
                    "worker": self.hostname,
                    "consumers": self.consumers,
                    "inflight": inflight,
                    "at": time.time(),
                }
                p.set(beat_key(self.prefix, member), json.dumps(body), px=ttl_ms)
                p.sadd(live_set(self.prefix), member)
            p.execute()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
                if self.broker is not None:
                    take_over(
                        self.broker,
                        self.r,
                        self.prefix,
                        self.engines,
                        self.hostname,
                        route_timeout=self.route_timeout,
                        idle=self.idle(),
                    )
            except redis.RedisError as exc:
                log.warning("engine heartbeat failed", error=str(exc))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.r.delete(*(beat_key(self.prefix, m) for m in self.members()))
            self.r.srem(live_set(self.prefix), *self.members())
        except redis.RedisError:
            pass


def take_over(
    broker: redis.Redis,
    r: redis.Redis,
    prefix: str,
    mine: list[str],
    hostname: str,
    limit: int = 100,
    route_timeout: float | None = None,
    idle: bool = False,
) -> int:
    """Move the steps queued on a dead engine of our capability to our engine's queue.

    Only from an engine whose resources ours covers (so any step it could take, we can). Each
    message is moved atomically to a staging list of this worker first (LMOVE: two workers never
    both take one), then re-addressed (queue, route) and pushed to our queue while it leaves the
    staging list, in one transaction; what a crash left staged is moved on the next beat. A step
    a dead worker held comes back to its engine's queue after the visibility timeout and is
    taken over then. With ``route_timeout``, an idle worker also takes the oldest step of a live
    engine's queue once it waited longer than that (one per beat). Redis broker only."""
    beats, _, _ = read_live(r, prefix, [])
    live = {b.get("engine") for b in beats}
    staging = f"{prefix}:eng:moving:{hostname}"
    moved = 0
    for key in mine:
        me = registry.get(key)
        if me is None:
            continue
        for left in broker.lrange(staging, 0, -1):
            moved += _readdress(broker, staging, left, me, "taken over after a restart")
        for dead in registry.of(me.capability):
            if dead.key == key or not me.satisfies(dict(dead.resources)):
                continue
            if dead.key in live:
                if (
                    route_timeout is not None
                    and idle
                    and _waited(broker.lindex(dead.queue, -1)) > route_timeout
                ):
                    got = broker.lmove(dead.queue, staging, "RIGHT", "LEFT")
                    if got is not None:
                        reason = f"queued on {dead.key} longer than route_timeout ({route_timeout:g}s)"
                        moved += _readdress(broker, staging, got, me, reason)
                        idle = False
                continue
            taken = 0
            reason = f"taken over from {dead.key}: no live worker there"
            while moved < limit and (got := broker.lmove(dead.queue, staging, "RIGHT", "LEFT")) is not None:
                taken += _readdress(broker, staging, got, me, reason)
                moved += 1
            if taken:
                log.warning(
                    "took over steps queued on an engine with no live worker", engine=dead.key, moved=taken
                )
    return moved


def _waited(raw: Any) -> float:
    """Seconds since the router published this message (0 when it was not routed)."""
    if raw is None:
        return 0.0
    try:
        at = json.loads(raw)["headers"]["canvasflow"]["route"]["at"]
    except (ValueError, KeyError, TypeError):
        return 0.0
    return time.time() - float(at)


def _readdress(broker: redis.Redis, staging: str, raw: Any, me: Engine, reason: str) -> int:
    """Point one staged message at our engine's queue (and its route at us), then move it there."""
    message = json.loads(raw)
    message.setdefault("properties", {}).setdefault("delivery_info", {}).update(
        exchange=me.queue, routing_key=me.queue
    )
    ref = (message.get("headers") or {}).get("canvasflow") or {}
    if ref.get("route"):
        old = ref["route"]
        ref["route"] = {
            **old,
            "engine": me.key,
            "queue": me.queue,
            "reason": reason,
            "tried": [*old.get("tried", []), old["engine"]],
            "at": round(time.time(), 3),
        }
    with broker.pipeline() as p:
        p.lpush(me.queue, json.dumps(message))
        p.lrem(staging, 1, raw)
        p.execute()
    return 1


_announcer: list[Announcer] = []


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    queues = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])]
    engines = engines_in(queues)
    if not engines:
        return
    s = get_settings()
    r = state_client(s.redis_state_url, socket_connect_timeout=s.broker_timeout)
    broker = None
    if s.broker_url.startswith(("redis://", "rediss://")):
        broker = redis.Redis.from_url(s.broker_url, socket_connect_timeout=s.broker_timeout)
    consumers = int(getattr(getattr(sender, "controller", None), "concurrency", 1) or 1)
    announcer = Announcer(
        r, s.key_prefix, sender.hostname, engines, consumers, s.engine_heartbeat_interval, broker
    )
    announcer.route_timeout = s.route_timeout
    _announcer.append(announcer)
    threading.Thread(target=announcer.run, name="canvasflow-engines", daemon=True).start()
    log.info("serving engines", engines=engines, consumers=consumers)


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    while _announcer:
        _announcer.pop().stop()
