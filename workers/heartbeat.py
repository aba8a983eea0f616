"""Worker liveness: each worker node's main process writes a heartbeat to the state Redis.

Layout (``<prefix>`` is ``CANVASFLOW_KEY_PREFIX``):

* ``<prefix>:hb:<hostname>``  JSON ``{"hostname", "pid", "pids", "at", "tasks"}`` with a TTL of
  ``heartbeat_ttl`` seconds, rewritten every ``heartbeat_interval`` seconds: ``pids`` are the
  main process and its pool children, ``tasks`` the ids of every task the node holds (received,
  scheduled for a retry, or running), from Celery's own request bookkeeping;
* ``<prefix>:workers``  a sorted set of hostnames (score: last beat), to enumerate the keys.

A node whose key expired is dead: a step it claimed is held by nobody. A task id missing from
every live node's ``tasks`` is not being run anywhere (e.g. cancelled by Celery on a broker
connection loss), whatever its claim says. :mod:`canvasflow.workflows.runtime.sweep` acts on both.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
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


def _key(prefix: str, hostname: str) -> str:
    return f"{prefix}:hb:{hostname}"


def _index(prefix: str) -> str:
    return f"{prefix}:workers"


def write_beat(client: redis.Redis, s: _Settings, hostname: str, pids: list[int], tasks: list[str]) -> None:
    """Write (or refresh) a node's heartbeat."""
    now = time.time()
    body = json.dumps({"hostname": hostname, "pid": pids[0], "pids": pids, "at": now, "tasks": tasks})
    p = client.pipeline(transaction=False)
    p.set(_key(s.key_prefix, hostname), body, ex=s.heartbeat_ttl)
    p.zadd(_index(s.key_prefix), {hostname: now})
    p.execute()


def clear_beat(client: redis.Redis, s: _Settings, hostname: str) -> None:
    """A node stopping cleanly says so at once (it holds no task any more)."""
    p = client.pipeline(transaction=False)
    p.delete(_key(s.key_prefix, hostname))
    p.zrem(_index(s.key_prefix), hostname)
    p.execute()


def beats(rt: HasRedis) -> dict[str, Beat]:
    """Every live node's last heartbeat, by hostname (expired ones are pruned from the index)."""
    prefix = rt.settings.key_prefix
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in rt.redis.zrange(_index(prefix), 0, -1)]
    if not names:
        return {}
    raw = get_many(rt.redis, [_key(prefix, n) for n in names])  # on a cluster: one GET per slot
    out: dict[str, Beat] = {}
    gone = []
    for name, value in zip(names, raw, strict=True):
        if value is None:
            gone.append(name)
            continue
        out[name] = _parse(name, value)
    if gone:  # a day without a beat: forget the name
        rt.redis.zremrangebyscore(_index(prefix), "-inf", time.time() - 86_400)
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
    value = client.get(_key(prefix, hostname))
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

    for _ in range(5):  # Celery's dict changes under us: copy it again
        try:
            return sorted(state.requests)
        except RuntimeError:
            continue
    return []


def _pool_pids(consumer: Any) -> list[int]:
    procs = getattr(getattr(getattr(consumer, "pool", None), "_pool", None), "_pool", None) or []
    return [int(p.pid) for p in procs if getattr(p, "pid", None)]


class HeartbeatThread(threading.Thread):
    """Beats every ``heartbeat_interval`` seconds until :meth:`stop`; never raises."""

    def __init__(self, rt: HasRedis, hostname: str, consumer: Any) -> None:
        super().__init__(name="canvasflow-heartbeat", daemon=True)
        self.rt = rt
        self.hostname = hostname
        self.consumer = consumer
        self._stop_event = threading.Event()

    def beat_once(self) -> None:
        pids = [os.getpid(), *_pool_pids(self.consumer)]
        write_beat(self.rt.redis, self.rt.settings, self.hostname, pids, _held_by_this_node())

    def run(self) -> None:
        failing = False
        while not self._stop_event.is_set():
            try:
                self.beat_once()
                if failing:
                    log.info("heartbeat written again", hostname=self.hostname)
                failing = False
            except (redis.RedisError, OSError) as exc:
                if not failing:
                    log.warning("heartbeat not written: state Redis unreachable", error=str(exc))
                failing = True
            except Exception:  # a bug must not stop the beat silently
                log.exception("heartbeat failed")
            self._stop_event.wait(self.rt.settings.heartbeat_interval)

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(redis.RedisError, OSError):  # else the key expires by itself
            clear_beat(self.rt.redis, self.rt.settings, self.hostname)
