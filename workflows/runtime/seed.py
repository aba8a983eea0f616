"""Seeding the hot-path state of a run in Redis: its graph, join counters, results of the steps
already completed, its status and labels (``meta``); one run at a time in a transaction
(start, resume, rebuild), or many new runs in one pipeline (``start_many``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from canvasflow.config.redis_clients import is_cluster

KeyOf = Callable[[str, str], str]


@dataclass(frozen=True)
class Seed:
    """A run's state as written: counters of waiting steps (``pending``), results of completed ones."""

    run_id: str
    generation: int
    graph_json: str
    pending: dict[str, int]
    left: int
    completed: dict[str, str] = field(default_factory=dict)
    status: str = "running"
    labels: dict[str, str] | None = None


def seed_run(r: redis.Redis, key: KeyOf, seed: Seed, index: str | None, *, fresh: bool = False) -> None:
    """One run's state in one round trip; with ``index``, the run joins that set in the same
    round trip (a separate one on a Cluster, where the set lives in another slot).

    A run whose state may exist (resume, rebuild, a derived id) is rewritten in a transaction,
    its old keys deleted first; a ``fresh`` run (a new random id, nothing published yet, so
    nobody reads it before this returns) is written as ``seed_new_runs`` writes a batch: no
    deletes, no transaction."""
    p = r.pipeline(transaction=not fresh)
    _commands(p, key, seed, fresh=fresh)
    shared = index is not None and not is_cluster(r)
    if shared:
        p.sadd(cast(str, index), seed.run_id)
    p.execute()
    if index is not None and not shared:
        r.sadd(index, seed.run_id)


def seed_new_runs(r: redis.Redis, key: KeyOf, seeds: Sequence[Seed], index: str) -> None:
    """New runs' state and their entries in ``index``: one pipeline, no transaction (nobody
    reads a new run before its first step is published, after this returns)."""
    p = r.pipeline(transaction=False)
    for seed in seeds:
        _commands(p, key, seed, fresh=True)
    p.sadd(index, *[seed.run_id for seed in seeds])
    p.execute()


def _commands(p: Any, key: KeyOf, s: Seed, *, fresh: bool = False) -> None:
    """The commands writing ``s``; a ``fresh`` run (a new id) has no earlier state to delete."""
    run_id = s.run_id
    if not fresh:
        p.delete(key(run_id, "st"), key(run_id, "deps"), key(run_id, "left"), key(run_id, "info"))
        p.hdel(key(run_id, "meta"), "ended")  # a resumed run ends anew
    p.set(key(run_id, "graph"), s.graph_json)
    if s.pending:
        p.hset(key(run_id, "deps"), mapping=cast(dict[Any, Any], s.pending))
    if s.completed:
        p.hset(key(run_id, "res"), mapping=cast(dict[Any, Any], s.completed))
        p.hset(key(run_id, "st"), mapping=dict.fromkeys(s.completed, "succeeded"))
    p.set(key(run_id, "left"), s.left)
    meta: dict[Any, Any] = {**(s.labels or {}), "status": s.status, "gen": str(s.generation)}
    p.hset(key(run_id, "meta"), mapping=meta)
