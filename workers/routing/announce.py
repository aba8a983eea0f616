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
from canvasflow.config.settings import get_settings
from canvasflow.workers.routing.live import beat_key, live_set

log = structlog.get_logger("canvasflow.routing")
ENGINE_QUEUE = re.compile(re.escape(CAPABILITY_PREFIX) + r"([a-z0-9][a-z0-9_-]*)\.([a-z0-9][a-z0-9_-]*)$")


def engines_in(queues: list[str]) -> list[str]:
    """``capability/engine`` for each engine queue among ``queues``."""
    return [f"{m[1]}/{m[2]}" for q in queues if (m := ENGINE_QUEUE.match(q))]


class Announcer:
    def __init__(
        self, r: redis.Redis, prefix: str, hostname: str, engines: list[str], consumers: int, interval: float
    ) -> None:
        self.r, self.prefix, self.hostname = r, prefix, hostname
        self.engines, self.consumers, self.interval = engines, consumers, interval
        self._stop = threading.Event()

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


_announcer: list[Announcer] = []


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    queues = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])]
    engines = engines_in(queues)
    if not engines:
        return
    s = get_settings()
    r = redis.Redis.from_url(s.redis_state_url, socket_connect_timeout=s.broker_timeout)
    consumers = int(getattr(getattr(sender, "controller", None), "concurrency", 1) or 1)
    announcer = Announcer(r, s.key_prefix, sender.hostname, engines, consumers, s.engine_heartbeat_interval)
    _announcer.append(announcer)
    threading.Thread(target=announcer.run, name="canvasflow-engines", daemon=True).start()
    log.info("serving engines", engines=engines, consumers=consumers)


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    while _announcer:
        _announcer.pop().stop()
