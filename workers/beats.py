"""Worker liveness, the records: each worker node's heartbeat in the state Redis, and its readers.

Layout (``<prefix>`` is ``CANVASFLOW_KEY_PREFIX``):

* ``<prefix>:hb:<hostname>``  JSON ``{"hostname", "pid", "pids", "at", "tasks", "queues",
  "engines", "consumers", "inflight"}`` with a TTL of ``heartbeat_ttl`` seconds, rewritten every
  ``heartbeat_interval`` seconds: ``pids`` are the main process and its pool children, ``tasks``
  the ids of every task the node holds (received, scheduled for a retry, waiting for a rate
  limit's token, or running), from Celery's own request bookkeeping and token buckets;
  ``queues`` what it consumes, ``engines`` the engines
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

The writer, a thread in each worker node's main process, is :mod:`canvasflow.workers.heartbeat`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from canvasflow.config.redis_clients import get_many


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
    queues: frozenset[str] = frozenset()  # what it consumes


# seconds between tries while the state Redis is unreachable: a node beats again within this of
# Redis answering, so the sweep that follows an outage knows which steps are still held
RETRY_WHILE_DOWN = 0.5


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
        frozenset(data.get("queues", [])),
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
