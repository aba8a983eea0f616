"""Worker liveness: each worker node's main process writes a heartbeat to the state Redis.

Layout (``<prefix>`` is ``CANVASFLOW_KEY_PREFIX``):

* ``<prefix>:hb:<hostname>``  JSON ``{"hostname", "pid", "pids", "at", "tasks", "queues",
  "engines", "consumers", "inflight"}`` with a TTL of ``heartbeat_ttl`` seconds, rewritten every
  ``heartbeat_interval`` seconds: ``pids`` are the main process and its pool children, ``tasks``
  the ids of every task the node holds (received, scheduled for a retry, or running), from
  Celery's own request bookkeeping; ``queues`` what it consumes, ``engines`` the engines
  (``capability/engine``) of its ``cap.<capability>.<engine>`` queues, ``consumers`` its pool
  size and ``inflight`` the steps it is running;
* ``<prefix>:workers``  a sorted set of hostnames (score: last beat), to enumerate the keys.

This one beat is also the live view of the engines (:mod:`canvasflow.workers.routing.live`
reads the nodes that serve one). A node serving an engine beats every
``min(heartbeat_interval, engine_heartbeat_interval)`` seconds and its key expires after
``min(heartbeat_ttl, 3 intervals)``, so a dead engine worker leaves the view within a few beats.

A node whose key expired is dead: a step it claimed is held by nobody. A task id missing from
every live node's ``tasks`` is not being run anywhere (e.g. cancelled by Celery on a broker
connection loss), whatever its claim says. :mod:`canvasflow.workflows.runs.sweep` acts on both.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import structlog

from canvasflow.config.redis_clients import get_many

log = structlog.get_logger("canvasflow.heartbeat")


class _Settings(Protocol):
    key_prefix: str
    heartbeat_interval: float
    heartbeat_ttl: int
    engine_heartbeat_interval: float


class HasRedis(Protocol):
    """What liveness needs of a runtime: the state Redis and the settings."""

    @property
    def redis(self) -> redis.Redis: ...
    @property
    def settings(self) -> Any: ...


@dataclass(frozen=True)
class Beat:
    """One node's last heartbeat."""

    hostname: str
    pid: int
    pids: frozenset[int]
    at: float  # epoch seconds, the node's clock
    tasks: frozenset[str]


def beat_key(prefix: str, hostname: str) -> str:
    return f"{prefix}:hb:{hostname}"


def workers_index(prefix: str) -> str:
    return f"{prefix}:workers"


@dataclass(frozen=True)
class Serving:
    """What a node serves: its queues, the engines among them, its pool size, steps running."""

    queues: tuple[str, ...] = ()
    engines: tuple[str, ...] = ()
    consumers: int = 1
    inflight: int = 0


def timing(s: _Settings, serves_engines: bool) -> tuple[float, float]:
    """``(interval, ttl)`` in seconds of a node's beat: engine nodes beat often enough for routing."""
    if not serves_engines:
        return s.heartbeat_interval, float(s.heartbeat_ttl)
    interval = min(s.heartbeat_interval, s.engine_heartbeat_interval)
    return interval, min(float(s.heartbeat_ttl), 3 * interval)


def write_beat(
    client: redis.Redis,
    s: _Settings,
    hostname: str,
    pids: list[int],
    tasks: list[str],
    serving: Serving | None = None,
) -> None:
    """Write (or refresh) a node's heartbeat."""
    now = time.time()
    serving = serving or Serving()
    body = json.dumps(
        {
            "hostname": hostname,
            "pid": pids[0],
            "pids": pids,
            "at": now,
            "engines": list(serving.engines),  # the live view skips '"engines": []' unread
            "queues": list(serving.queues),
            "consumers": serving.consumers,
            "inflight": serving.inflight,
            "tasks": tasks,
        }
    )
    _, ttl = timing(s, bool(serving.engines))
    p = client.pipeline(transaction=False)
    p.set(beat_key(s.key_prefix, hostname), body, px=int(ttl * 1000))
    p.zadd(workers_index(s.key_prefix), {hostname: now})
    p.execute()


def clear_beat(client: redis.Redis, s: _Settings, hostname: str) -> None:
    """A node stopping cleanly says so at once (it holds no task any more)."""
    p = client.pipeline(transaction=False)
    p.delete(beat_key(s.key_prefix, hostname))
    p.zrem(workers_index(s.key_prefix), hostname)
    p.execute()


def beats(rt: HasRedis) -> dict[str, Beat]:
    """Every live node's last heartbeat, by hostname (expired ones are pruned from the index)."""
    prefix = rt.settings.key_prefix
    names = [
        n.decode() if isinstance(n, bytes) else str(n) for n in rt.redis.zrange(workers_index(prefix), 0, -1)
    ]
    if not names:
        return {}
    raw = get_many(rt.redis, [beat_key(prefix, n) for n in names])  # on a cluster: one GET per slot
    out: dict[str, Beat] = {}
    gone = []
    for name, value in zip(names, raw, strict=True):
        if value is None:
            gone.append(name)
            continue
        out[name] = _parse(name, value)
    if gone:  # a day without a beat: forget the name
        rt.redis.zremrangebyscore(workers_index(prefix), "-inf", time.time() - 86_400)
    return out


def _parse(name: str, value: bytes | str) -> Beat:
    data = json.loads(value)
    return Beat(
        name,
        int(data["pid"]),
        frozenset(int(p) for p in data.get("pids", [data["pid"]])),
        float(data["at"]),
        frozenset(data.get("tasks", [])),
    )


def read_beat(client: redis.Redis, prefix: str, hostname: str) -> Beat | None:
    """One node's heartbeat, None when it has expired (or never was): one GET, for probes."""
    value = client.get(beat_key(prefix, hostname))
    return None if value is None else _parse(hostname, value)


def live_workers(rt: HasRedis) -> set[str]:
    """Hostnames of the worker nodes whose heartbeat has not expired."""
    return set(beats(rt))


def is_alive(rt: HasRedis, hostname: str, pid: int | None = None) -> bool:
    """True while ``hostname`` beats and (when given) ``pid`` is its main process or a pool child."""
    beat = beats(rt).get(hostname)
    return beat is not None and (pid is None or pid in beat.pids)


def held_tasks(live: dict[str, Beat]) -> set[str]:
    """Ids of the tasks some live node holds (received, scheduled or running)."""
    return set().union(*(b.tasks for b in live.values())) if live else set()


def is_held(rt: HasRedis, task_id: str) -> bool:
    """True while some live worker node holds ``task_id`` (received, scheduled for a retry, or
    running). False means no worker will run it: its worker died, or Celery cancelled it. The
    node's view is up to ``heartbeat_interval`` old: judge a task received a moment ago later."""
    return task_id in held_tasks(beats(rt))


# -- the writer (a worker's main process) ------------------------------------------------------
def _held_by_this_node() -> list[str]:
    from celery.worker import state

    from canvasflow.workflows.runtime.bundles import carried_ids  # late: workers is the lower layer

    for _ in range(5):  # Celery's dict changes under us: copy it again
        try:
            requests = list(state.requests.values())
        except RuntimeError:
            continue
        held = {r.id for r in requests}
        for r in requests:  # the siblings a bundle's message carries are held with it
            held.update(carried_ids((getattr(r, "request_dict", None) or {}).get("canvasflow")))
        return sorted(held)
    return []


def _pool_pids(consumer: Any) -> list[int]:
    procs = getattr(getattr(getattr(consumer, "pool", None), "_pool", None), "_pool", None) or []
    return [int(p.pid) for p in procs if getattr(p, "pid", None)]


def _queues_of(consumer: Any) -> tuple[str, ...]:
    return tuple(q.name for q in getattr(getattr(consumer, "task_consumer", None), "queues", []))


def _concurrency(consumer: Any) -> int:
    return int(getattr(getattr(consumer, "controller", None), "concurrency", 1) or 1)


def _running_here() -> int:
    from celery.worker import state

    return len(state.active_requests)


class HeartbeatThread(threading.Thread):
    """Beats every interval (see :func:`timing`) until :meth:`stop`; never raises.

    ``after_beat`` (given the node's :class:`Serving`) runs after each beat: an engine worker
    takes over steps there (:mod:`canvasflow.workers.routing.takeover`)."""

    def __init__(
        self,
        rt: HasRedis,
        hostname: str,
        consumer: Any,
        after_beat: Callable[[Serving], None] | None = None,
    ) -> None:
        from canvasflow.workers.engines import engines_in

        super().__init__(name="canvasflow-heartbeat", daemon=True)
        self.rt = rt
        self.hostname = hostname
        self.consumer = consumer
        self.after_beat = after_beat
        queues = _queues_of(consumer)
        self.serving = Serving(queues, tuple(engines_in(list(queues))), _concurrency(consumer))
        self.interval, _ = timing(rt.settings, bool(self.serving.engines))
        self._stop_event = threading.Event()

    def beat_once(self) -> Serving:
        pids = [os.getpid(), *_pool_pids(self.consumer)]
        serving = Serving(self.serving.queues, self.serving.engines, self.serving.consumers, _running_here())
        write_beat(self.rt.redis, self.rt.settings, self.hostname, pids, _held_by_this_node(), serving)
        return serving

    def run(self) -> None:
        failing = False
        while not self._stop_event.is_set():
            try:
                serving = self.beat_once()
                if failing:
                    log.info("heartbeat written again", hostname=self.hostname)
                failing = False
                if self.after_beat is not None:
                    self.after_beat(serving)
            except (redis.RedisError, OSError) as exc:
                if not failing:
                    log.warning("heartbeat not written: state Redis unreachable", error=str(exc))
                failing = True
            except Exception:  # a bug must not stop the beat silently
                log.exception("heartbeat failed")
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(redis.RedisError, OSError):  # else the key expires by itself
            clear_beat(self.rt.redis, self.rt.settings, self.hostname)
