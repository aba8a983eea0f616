"""The runs in flight: the index the recovery sweep watches, and how long a run has been idle.

A run is active while the journal says so (``ACTIVE_SQL``) or while it is in the Redis set
``<prefix>:active``, kept by start and resume (:func:`mark_active`) and pruned by recovery
once the run has settled. The set lets the sweep find a run's steps while the journal is
down; :func:`idle_seconds` tells a stalled run from a moving one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from canvasflow.config.redis_clients import is_cluster
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.state import as_text

log = structlog.get_logger("canvasflow.sweep")
ACTIVE_SQL = ("pending", "running", "waiting", "compensating")


def active_key(rt: Runtime) -> str:
    return f"{rt.settings.key_prefix}:active"


def mark_active(rt: Runtime, run_id: str) -> None:
    """Index a run the sweep must watch (start and resume call this; the sweep prunes it)."""
    rt.redis.sadd(active_key(rt), run_id)


def active_runs(rt: Runtime) -> dict[str, int | None]:
    """Non-terminal runs, the journal's (when it answers) and the Redis index's, with the
    generation the journal holds (None when only Redis knows the run)."""
    runs: dict[str, int | None] = {as_text(x): None for x in rt.redis.smembers(active_key(rt))}
    try:
        runs.update(rt.store.runs_with_status(ACTIVE_SQL))
    except Exception as exc:  # the journal is down: Redis still knows the runs it runs
        log.warning("sweep: journal unreachable, watching the Redis index only", error=str(exc))
    return dict(sorted(runs.items()))


def has_state(rt: Runtime, run_id: str) -> bool:
    return bool(rt.redis.exists(rt.state.key(run_id, "graph")))


def _last_redis_progress(rt: Runtime, run_id: str) -> float | None:
    latest = None
    for meta in rt.state.step_info(run_id).values():
        for key in ("finished_at", "started_at"):
            if meta.get(key):
                at = datetime.fromisoformat(meta[key]).timestamp()
                latest = at if latest is None else max(latest, at)
    return latest


def idle_seconds(rt: Runtime, run_id: str) -> float | None:
    """Seconds since the run last moved (its newest journal event or step claim/completion)."""
    last = rt.store.last_event_at(run_id)
    stamps = [last.timestamp()] if last else []
    try:
        live = _last_redis_progress(rt, run_id)
    except Exception:  # Redis down: the journal alone tells
        live = None
    if live is not None:
        stamps.append(live)
    return time.time() - max(stamps) if stamps else None


# The sweep's suspicions of a run's steps (``<run>:suspect``: unit -> when first suspected).
# Written by a sweep that read the run a moment ago, they may land after the run finished and
# its keys were given their expiry: a plain HSET + EXPIRE then made a key that outlived the
# run's state by ``result_expires`` (found by the bench's memory part: keys left after the
# expiry, gone only when a later sweep reached the run). So the write checks the run first,
# in the same script: a run whose state expires (finished) or is gone gets no suspicion,
# except ``when_lost`` (the sweep notes that a run the journal holds as active lost its state).
_SUSPECT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 or (ttl == -2 and ARGV[2] ~= '1') then
  if ttl > 0 and redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], ttl) end
  return 0
end
local drop = tonumber(ARGV[3])
for i = 1, drop do redis.call('HDEL', KEYS[2], ARGV[3 + i]) end
for i = 4 + drop, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
if #ARGV >= 4 + drop then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return 1
"""


def note_suspicions(
    rt: Runtime,
    run_id: str,
    fresh: dict[str, float],
    drop: Sequence[str] = (),
    *,
    when_lost: bool = False,
    pipe: Any = None,
) -> None:
    """Record ``fresh`` suspicions of a run's units and forget ``drop``, only while the run is
    active (see ``_SUSPECT``); through ``pipe`` when given (the sweep writes many runs at once)."""
    script = rt.__dict__.get("_suspect_script")
    if script is None:
        script = rt.__dict__["_suspect_script"] = rt.redis.register_script(_SUSPECT)
    pairs = [x for unit, at in fresh.items() for x in (unit, at)]
    keys = [rt.state.key(run_id, "meta"), rt.state.key(run_id, "suspect")]
    args = [rt.settings.result_expires, "1" if when_lost else "0", len(drop), *drop, *pairs]
    # a cluster pipeline is not trusted with scripts: there, each run's call goes alone
    script(keys=keys, args=args, client=None if is_cluster(rt.redis) else pipe)
