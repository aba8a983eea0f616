"""The hot-path state of active runs, in Redis: step claims, completions and joins, atomically.

Each transition is one Lua script (one round trip, atomic; state_scripts.py), so duplicated or racing
deliveries agree on a single winner:

* claim    -- a delivery may run the step (``run``), the step already completed (``done``),
              or the run no longer wants it (``skip``: failed, cancelled, or an old generation)
* complete -- first completion wins; it stores the result and decrements each successor's
              join counter, returning the successors that became ready (exactly once)
* fail     -- first failure of a running run moves it to the failure status (exactly once)

SQL (workflows.store) is the durable journal; this is what workers read and race on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from canvasflow.config.redis_clients import run_scripts
from canvasflow.workflows.runtime import state_scripts as scripts
from canvasflow.workflows.runtime.seed import Seed, seed_new_runs, seed_run

ACTIVE = ("running", "waiting")


@dataclass(frozen=True)
class Claim:
    outcome: str  # run | done | skip
    run_status: str
    attempt: int = 0
    previous: str = ""  # the info JSON of an earlier delivery that claimed the step and never finished


@dataclass(frozen=True)
class Completion:
    first: bool
    run_status: str  # the run's status; 'finished' when this completion finished the run
    left: int
    ready: list[str]


class RunState:
    """Redis keys of one deployment (``prefix``); methods take the run id."""

    def __init__(self, client: redis.Redis, prefix: str, finished_ttl: int = 3600) -> None:
        self.r = client
        self.prefix = prefix
        self.wakeup_ttl = min(3600, finished_ttl)  # a finished run's wake-up token lives no longer
        self._claim = client.register_script(scripts.CLAIM)
        self._complete = client.register_script(scripts.COMPLETE)
        self._fail = client.register_script(scripts.FAIL)
        self._transition = client.register_script(scripts.TRANSITION)
        self._chunk = client.register_script(scripts.CHUNK)
        self._revoked = client.register_script(scripts.REVOKED)
        self._retrying = client.register_script(scripts.RETRYING)

    def key(self, run_id: str, part: str) -> str:
        return f"{self.prefix}:{{{run_id}}}:{part}"

    # -- set-up --------------------------------------------------------------------
    def init_run(self, run_id: str, *, index: str | None = None, fresh: bool = False, **state: Any) -> None:
        """Write a run's state (:class:`~seed.Seed`'s fields: ``generation``, ``graph_json``,
        ``pending`` join counters, ``left``, ``completed`` results, ``status``, ``labels``); with
        ``index``, add the run to that set in the same round trip; ``fresh``: a new run id, which
        has no earlier state (seed.py)."""
        seed_run(self.r, self.key, Seed(run_id, **state), index, fresh=fresh)

    def init_new_runs(self, seeds: list[Seed], index: str) -> None:
        """The state of many new runs and their entries in ``index``, in one pipeline (seed.py)."""
        seed_new_runs(self.r, self.key, seeds, index)

    def graph_json(self, run_id: str) -> str | None:
        raw = self.r.get(self.key(run_id, "graph"))
        return raw.decode() if isinstance(raw, bytes) else raw

    # -- transitions ----------------------------------------------------------------
    def claim(self, run_id: str, step_id: str, generation: int, info: dict[str, Any]) -> Claim:
        k = self.key
        keys = [k(run_id, "meta"), k(run_id, "st"), k(run_id, "att"), k(run_id, "info")]
        out = self._claim(keys=keys, args=[step_id, str(generation), json.dumps(info)])
        outcome, status = as_text(out[0]), as_text(out[1])
        return Claim(
            outcome, status, int(out[2]) if len(out) > 2 else 0, as_text(out[3]) if len(out) > 3 else ""
        )

    def complete(
        self, run_id: str, step_id: str, result_json: str, successors: list[str], info_json: str = ""
    ) -> Completion:
        """First completion wins: store the result (and the step's timing ``info``), release joins."""
        k = self.key
        keys = [k(run_id, p) for p in ("meta", "st", "deps", "left", "res", "info")]
        return _completion(self._complete(keys=keys, args=[step_id, result_json, info_json, *successors]))

    def complete_many(self, items: list[tuple[str, str, str, list[str], str]]) -> list[Completion]:
        """:meth:`complete` of many ``(run, step, result, successors, info)``: one round trip on a
        server (one call each on a cluster)."""
        parts = ("meta", "st", "deps", "left", "res", "info")
        calls = [
            ([self.key(run_id, part) for part in parts], [step_id, result_json, info_json, *successors])
            for run_id, step_id, result_json, successors, info_json in items
        ]
        return [_completion(out) for out in run_scripts(self.r, scripts.COMPLETE, calls)]

    def fail(self, run_id: str, step_id: str, run_status: str, step_status: str = "failed") -> bool:
        """Mark the step failed; True when this call moved the active run to ``run_status``."""
        k = self.key
        out = self._fail(keys=[k(run_id, "meta"), k(run_id, "st")], args=[step_id, run_status, step_status])
        return bool(out[0])

    def transition(self, run_id: str, expected: tuple[str, ...], new: str) -> bool:
        return bool(self._transition(keys=[self.key(run_id, "meta")], args=[new, *expected]))

    def mark_retrying(self, run_id: str, step_id: str) -> None:
        """The step's attempt failed and a retry is on its way: nothing of this attempt completed."""
        self._retrying(keys=[self.key(run_id, "st")], args=[step_id])

    def mark_revoked(self, run_id: str, step_id: str) -> bool:
        """A revoked step will not complete (unless it already did); True when this stopped it
        (it was queued, running or retrying), False when it had ended already."""
        return bool(self._revoked(keys=[self.key(run_id, "st")], args=[step_id]))

    def chunk_partial(self, run_id: str, step_id: str, index: int, result_json: str) -> None:
        """A failed chunk's items that did complete (their effects must be undone too)."""
        p = self.r.pipeline(transaction=True)
        p.hsetnx(self.key(run_id, f"chunks:{step_id}"), str(index), result_json)
        p.hset(self.key(run_id, "st"), f"{step_id}#{index}", "partial")
        p.execute()

    def chunk_done(self, run_id: str, step_id: str, index: int, result_json: str) -> int:
        """Store one map chunk's result; chunks still missing (-1 for a duplicate)."""
        keys = [self.key(run_id, f"chunks:{step_id}"), self.key(run_id, "chunksleft"), self.key(run_id, "st")]
        return int(self._chunk(keys=keys, args=[str(index), result_json, step_id]))

    def set_chunks(self, run_id: str, step_id: str, count: int) -> bool:
        """Record how many chunks a map step fans out to; False when already recorded."""
        return bool(self.r.hsetnx(self.key(run_id, "chunksleft"), step_id, count))

    def chunk_results(self, run_id: str, step_id: str) -> dict[int, Any]:
        raw = self.r.hgetall(self.key(run_id, f"chunks:{step_id}"))
        return {int(i): json.loads(v) for i, v in raw.items()}

    # -- reads -----------------------------------------------------------------------
    def labels(self, run_id: str) -> dict[str, str]:
        """The run's meta fields: status, generation, workflow, version, parent."""
        return {as_text(a): as_text(b) for a, b in self.r.hgetall(self.key(run_id, "meta")).items()}

    def status(self, run_id: str) -> str | None:
        raw = self.r.hget(self.key(run_id, "meta"), "status")
        return as_text(raw) if raw is not None else None

    def ended_at(self, run_id: str) -> datetime | None:
        """When the run last reached a terminal status in Redis (stamped by that script; None: never)."""
        raw = self.r.hget(self.key(run_id, "meta"), "ended")
        return datetime.fromtimestamp(float(raw), UTC) if raw is not None else None

    def results(self, run_id: str, step_ids: list[str]) -> dict[str, Any]:
        if not step_ids:
            return {}
        raw = self.r.hmget(self.key(run_id, "res"), step_ids)
        return {sid: json.loads(v) for sid, v in zip(step_ids, raw, strict=True) if v is not None}

    def step_states(self, run_id: str) -> dict[str, str]:
        return {as_text(a): as_text(b) for a, b in self.r.hgetall(self.key(run_id, "st")).items()}

    def step_info(self, run_id: str) -> dict[str, dict[str, Any]]:
        raw = self.r.hgetall(self.key(run_id, "info"))
        return {as_text(a): json.loads(b) for a, b in raw.items()}

    def attempts(self, run_id: str) -> dict[str, int]:
        return {as_text(a): int(b) for a, b in self.r.hgetall(self.key(run_id, "att")).items()}

    def progress(self, run_id: str, maps: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        """Step (or chunk) id -> its last reported progress (progress.py writes it); each of
        ``maps`` (map step ids) as chunks done of total."""
        raw = self.r.hgetall(self.key(run_id, PROGRESS))
        out = {as_text(k): json.loads(v) for k, v in raw.items()}
        if maps:
            left = self.r.hmget(self.key(run_id, "chunksleft"), list(maps))
            p = self.r.pipeline(transaction=False)
            for sid in maps:
                p.hlen(self.key(run_id, f"chunks:{sid}"))
            done = p.execute()
            for sid, remaining, finished in zip(maps, left, done, strict=True):
                if remaining is not None:
                    total = int(finished) + max(int(remaining), 0)
                    out[sid] = {"done": int(finished), "total": total, "note": "chunks", "at": None}
        return out

    def notify_finished(self, run_id: str) -> None:
        key = self.key(run_id, "done")
        p = self.r.pipeline()
        p.rpush(key, "1")
        p.expire(key, self.wakeup_ttl)  # a wake-up for waiters only: the run's status is in the journal
        p.execute()

    def wait_finished(self, run_id: str, timeout: float) -> None:
        """Block up to ``timeout`` seconds for a finish notice (a wake-up, not a guarantee)."""
        key = self.key(run_id, "done")
        if self.r.blpop([key], timeout=max(timeout, 0.01)):
            self.notify_finished(run_id)  # leave it for other waiters

    def expire(self, run_id: str, seconds: int | None) -> None:
        """Let a finished run's keys expire after ``seconds``; None: keep them (a resumed run)."""
        p = self.r.pipeline()
        for part in (*RUN_PARTS, *self._graph_parts(run_id)):
            if seconds is None:
                p.persist(self.key(run_id, part))
            else:
                p.expire(self.key(run_id, part), seconds)
        p.execute()

    def _graph_parts(self, run_id: str) -> list[str]:
        """The keys a run has because of its graph: map steps' chunk results, errback guards."""
        raw = self.graph_json(run_id)
        if raw is None:
            return []
        graph = json.loads(raw)
        steps = graph.get("steps", [])
        maps = [f"chunks:{s['id']}" for s in steps if s.get("kind") == "map"]
        wake = ["wake"] if any(s.get("kind") == "sleep" for s in steps) else []  # timers.py
        return [*maps, *wake, *(f"errback:{i}" for i in range(len(graph.get("errbacks", []))))]


# the hash of a run's reported progress, one field per step or map chunk (progress.py)
PROGRESS = "progress"


def _completion(out: Any) -> Completion:
    if not out[0]:
        return Completion(False, "", -1, [])
    return Completion(True, as_text(out[1]), int(out[2]), [as_text(x) for x in out[3:]])


RUN_PARTS = (  # every key of a run, but those its graph adds (_graph_parts)
    "meta",
    "st",
    "deps",
    "left",
    "res",
    "att",
    "info",
    "graph",
    "chunksleft",
    "comp",
    "compclaim",
    "compround",
    "comperr",
    "compdisp",
    "data",
    PROGRESS,
    "suspect",  # the recovery sweep's suspicions of the run's steps (sweep.py)
)


def as_text(value: Any) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else str(value)
