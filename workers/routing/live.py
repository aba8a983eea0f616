"""The live view of the engines, read from Redis and cached for a short time per process.

Each worker node's heartbeat (:mod:`canvasflow.workers.beats`, one key per node with an
expiry) names the engines it serves, its consumers and in-flight steps; a read fetches the
beats of the recently seen nodes (keeping those that serve an engine), the engines' duration
EWMAs and (with a Redis broker on the same server) their queue depths. Between reads the view
counts this process's own sends, so a burst of ready steps spreads.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from typing import Any

import redis
import structlog

from canvasflow.config.queues import redis_lists
from canvasflow.config.redis_clients import get_many
from canvasflow.workers.beats import beat_key, workers_index
from canvasflow.workers.engines import Engine, registry
from canvasflow.workers.routing.snapshot import EngineState

log = structlog.get_logger("canvasflow.routing")

EWMA_ALPHA = 0.3

SEEN_WITHIN_S = 600.0  # nodes whose last beat is older are not even looked at
_NO_ENGINES = b'"engines": []'  # a node serving no engine: its beat is not decoded

_OBSERVE = """
local v = tonumber(ARGV[2])
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then v = tonumber(old) * (1 - tonumber(ARGV[3])) + v * tonumber(ARGV[3]) end
redis.call('HSET', KEYS[1], ARGV[1], tostring(v))
return tostring(v)
"""


def ewma_key(prefix: str) -> str:
    return f"{prefix}:eng:ewma"


def read_live(
    r: redis.Redis, prefix: str, depth_queues: list[str]
) -> tuple[list[dict[str, Any]], dict[str, float], list[int]]:
    """One entry per live (engine, worker), the EWMA per engine key, and the depth of each queue
    in ``depth_queues``. An entry: ``{"engine", "worker", "consumers", "inflight", "at"}``.

    Two round trips (the node index, the EWMAs and depths; then the nodes' beats), no script: a
    node's key is known only once the index is read, and a script may touch only the keys it is
    given (on a Redis Cluster the keys sit on several primaries)."""
    p = r.pipeline(transaction=False)
    p.zrangebyscore(workers_index(prefix), time.time() - SEEN_WITHIN_S, "+inf")
    p.hgetall(ewma_key(prefix))
    lanes = [redis_lists(queue) for queue in depth_queues]  # a message with a priority sits in its lane
    for lists in lanes:
        for name in lists:
            p.llen(name)
    names, ewma, *lengths = p.execute()
    at = iter(int(n) for n in lengths)
    depths = [sum(next(at) for _ in lists) for lists in lanes]
    hosts = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    raw = get_many(r, [beat_key(prefix, h) for h in hosts])
    nodes = [json.loads(v) for v in raw if v is not None and _NO_ENGINES not in _bytes(v)]
    beats = [
        {
            "engine": engine,
            "worker": node["hostname"],
            "consumers": node.get("consumers", 0),
            "inflight": node.get("inflight", 0),
            "at": node.get("at", 0),
        }
        for node in nodes
        for engine in node.get("engines") or []
    ]
    return (
        beats,
        {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in ewma.items()},
        depths,
    )


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def observe(r: redis.Redis, prefix: str, engine_key: str, seconds: float) -> None:
    """Fold one step duration into the engine's EWMA (called by the worker when a routed step completes)."""
    r.eval(_OBSERVE, 1, ewma_key(prefix), engine_key, str(seconds * 1000.0), str(EWMA_ALPHA))


class LiveView:
    """The engines of each capability as last read, plus the sends made since.

    While a process keeps routing (a decision at least every ``IDLE_TTLS`` x ``ttl`` seconds), a
    daemon thread reads the view again every ``ttl``, so a decision on the hot path (the first
    hop of each run) does not wait for the read; then the thread stops and the next decision
    reads the view itself. A decision that finds no live engine reads it again first
    (:meth:`fresh`), as does the expansion of a ``parallel_capability``."""

    IDLE_TTLS = 2.0

    def __init__(self, r: redis.Redis, prefix: str, ttl: float, depths: bool) -> None:
        self.r, self.prefix, self.ttl, self.depths = r, prefix, ttl, depths
        self._states: dict[str, EngineState] = {}
        self._read_at = -1e9
        self._used_at = -1e9
        self._ignored: set[str] = set()
        self._reader: threading.Thread | None = None

    def states(self, now: float | None = None) -> dict[str, EngineState]:
        now = time.monotonic() if now is None else now
        self._used_at = now
        if now - self._read_at > self.ttl:
            self.refresh()
            self._read_at = now
            self._keep_fresh()
        return self._states

    def fresh(self) -> dict[str, EngineState]:
        """The view read now (before refusing a step or parking it: an engine may have just come up)."""
        self.refresh()
        self._read_at = time.monotonic()
        return self._states

    def _keep_fresh(self) -> None:
        if self.ttl <= 0 or (self._reader is not None and self._reader.is_alive()):
            return
        self._reader = threading.Thread(
            target=self._read_while_used, name="canvasflow-live-view", daemon=True
        )
        self._reader.start()

    def _read_while_used(self) -> None:
        while time.monotonic() - self._used_at < self.IDLE_TTLS * self.ttl:
            time.sleep(self.ttl * 0.8)
            try:
                self.refresh()
            except Exception as exc:  # Redis away: the next decision reads (and raises) itself
                log.warning("live view not read in the background", error=str(exc))
                return
            self._read_at = time.monotonic()

    def refresh(self) -> None:
        engines = registry.all()
        queues = [e.queue for e in engines] if self.depths else []
        beats, ewma, depths = read_live(self.r, self.prefix, queues)
        states = {e.key: EngineState(e, ewma_ms=ewma.get(e.key)) for e in engines}
        for e in engines:
            if e.workflow:  # a workflow engine runs as child runs on the control workers: always there
                states[e.key].workers = states[e.key].consumers = 1
        for engine, depth in zip(engines, depths, strict=False):
            states[engine.key].queued = depth
        for beat in beats:
            state = states.get(beat.get("engine", ""))
            if state is None:
                self._ignore(beat)
                continue
            state.workers += 1
            state.consumers += int(beat.get("consumers", 0))
            state.inflight += int(beat.get("inflight", 0))
        self._states = states

    def _ignore(self, beat: dict[str, Any]) -> None:
        member = f"{beat.get('engine')}@{beat.get('worker')}"
        if member not in self._ignored:
            self._ignored.add(member)
            log.warning(
                "heartbeat from an engine that is not registered: ignored (declare it in CANVASFLOW_ENGINES)",
                engine=beat.get("engine"),
                worker=beat.get("worker"),
            )

    def sent(self, engine_key: str) -> None:
        """Count a step this process just published to the engine until the next read."""
        state = self._states.get(engine_key)
        if state is not None:
            state.queued += 1

    def copy(self) -> dict[str, EngineState]:
        return {k: replace(v) for k, v in self.states().items()}


_views: dict[tuple[int, str], LiveView] = {}


def view_for(r: redis.Redis, prefix: str, ttl: float, depths: bool) -> LiveView:
    """This process's view (a forked child builds its own)."""
    key = (os.getpid(), prefix)
    found = _views.get(key)
    if found is None or found.r is not r:
        found = _views[key] = LiveView(r, prefix, ttl, depths)
    return found


def engine_of(key: str) -> Engine | None:
    return registry.get(key)
