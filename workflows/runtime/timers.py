"""Durable timers: ``sleep`` steps, which hold no worker slot and no message while they wait.

A sleep step (``canvasflow.sleep(seconds)``, ``canvasflow.sleep_until(when)``) starts like a
signal wait (special.py): nothing is published. Its due time is fixed the first time the run
reaches it and kept in three places:

* the journal: the step's ``wakes_at`` column (one SQL write, the durable record);
* the run's Redis state: ``<prefix>:{<run>}:wake`` (field: the step), beside its other keys;
* the timer index: one sorted set ``<prefix>:timers`` scored by due time, member
  ``[run, step, generation]`` (a key of its own, outside every run's hash slot).

Meanwhile the step and the run are ``waiting``. The timer service of the control workers
(``workflows/runs/timer_service.py``) reads the index every ``timer_interval`` seconds;
:func:`take` wakes a due step once (one Lua script on the run's keys: only the current
generation of an active run, only a step still waiting; the same script reads what the step
hands on: its first argument, unchanged) and the executor completes it with that. A
cancelled, failed or timed-out run is not active, so its timer changes nothing when it fires.

A timer outlives what Redis forgets: a run whose state is rebuilt from the journal reaches its
sleep step again in a new generation, and :func:`begin` takes the due time from the journal,
never a fresh one, so the run sleeps until the same moment.

Time is :func:`now`: the wall clock plus ``CANVASFLOW_CLOCK_OFFSET`` (0 in production; a test
moves a worker's clock forward instead of waiting an hour).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from canvasflow.config.errors import InputError
from canvasflow.config.redis_clients import run_scripts
from canvasflow.config.settings import Settings
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.graph import StepNode, resolve

WAKE = "wake"  # the run's hash of due times (step -> epoch seconds)

# take a due step: the current generation of an active run, the step still waiting; returns the
# step's info (when it fell asleep) and the results it reads (ARGV[3..], one JSON array). 2 when
# no other step of the run still waits, so the run itself moved from waiting back to running
_TAKE = """
local meta = redis.call('HMGET', KEYS[1], 'status', 'gen')
if meta[2] ~= ARGV[2] or (meta[1] ~= 'running' and meta[1] ~= 'waiting') then return {0} end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= 'waiting' then return {0} end
redis.call('HSET', KEYS[2], ARGV[1], 'running')
local info = redis.call('HGET', KEYS[3], ARGV[1]) or '{}'
local res = {}
if #ARGV > 2 then res = redis.call('HMGET', KEYS[4], unpack(ARGV, 3)) end
local code = 2
if meta[1] == 'running' then code = 1 end
if code == 2 then
  for _, st in ipairs(redis.call('HVALS', KEYS[2])) do
    if st == 'waiting' then code = 1; break end
  end
end
if code == 2 then redis.call('HSET', KEYS[1], 'status', 'running') end
local out = {code, info}
for i = 1, #ARGV - 2 do out[i + 2] = res[i] or '' end
return out
"""


# -- pure ----------------------------------------------------------------------------------
def now(settings: Settings) -> float:
    """The timers' clock: epoch seconds, moved by ``clock_offset`` (a fake clock for tests)."""
    return time.time() + settings.clock_offset


def seconds_of(duration: Any) -> float:
    """A sleep's length in seconds (a number or a timedelta, 0 or more, finite); else InputError."""
    if isinstance(duration, timedelta):
        duration = duration.total_seconds()
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 <= duration < math.inf:
        raise InputError(
            f"sleep needs a number of seconds >= 0 or a timedelta, got {duration!r}: "
            "write canvasflow.sleep(30) or canvasflow.sleep(timedelta(hours=1))"
        )
    return float(duration)


def instant_of(when: Any) -> str:
    """A wake-up time as UTC ISO text; a naive datetime is refused (which zone would it be in?)."""
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise InputError(
            f"sleep_until needs a timezone-aware datetime, got {when!r}: "
            "write canvasflow.sleep_until(datetime(2030, 1, 1, tzinfo=UTC))"
        )
    return when.astimezone(UTC).isoformat()


def due_at(spec: Mapping[str, Any], started: float) -> float:
    """When a sleep step that started at ``started`` is due (epoch seconds)."""
    if "until" in spec:
        return datetime.fromisoformat(str(spec["until"])).timestamp()
    return started + float(spec.get("seconds") or 0)


def member(run_id: str, step_id: str, gen: int) -> str:
    """A timer's member in the index."""
    return json.dumps([run_id, step_id, gen], separators=(",", ":"))


def parse(raw: Any) -> tuple[str, str, int] | None:
    """``(run, step, generation)`` of an index member; None for one that is not a timer."""
    try:
        run_id, step_id, gen = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not (isinstance(run_id, str) and isinstance(step_id, str) and isinstance(gen, int)):
        return None
    return run_id, step_id, gen


def index_key(settings: Settings) -> str:
    return f"{settings.key_prefix}:timers"


def as_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


# -- a sleep step starts -------------------------------------------------------------------------
def begin(rt: Runtime, run_id: str, gen: int, node: StepNode) -> bool:
    """Start a sleep step; True when it is due already (the caller completes it now).

    The due time is the one the run's state or (after a rebuild, a resume, or a crash before
    the run's state was written) the journal holds, else now plus the sleep. Journal first,
    then the run's state, then the index: a crash before the run's state leaves the step
    ``queued`` with no message, so the sweep dispatches it again (and the journal gives its
    due time); one before the index is found by the sweep too (:func:`rearm`)."""
    wake_key = rt.state.key(run_id, WAKE)
    known = rt.redis.hget(wake_key, node.id)
    due = float(known) if known is not None else None
    wall = time.time()
    clock = wall + rt.settings.clock_offset  # now(rt.settings), with the wall time it fell asleep
    if due is None:
        journaled = rt.store.wakes_at(run_id, node.id)
        due = journaled.timestamp() if journaled is not None else None
    if due is None:
        due = due_at(node.spec, clock)
    if due <= clock:
        return True
    started = as_datetime(wall)
    if known is None or gen > 1:  # first time, or a new generation (its rows were reset): journal it
        rt.store.sleeping(run_id, node.id, started, as_datetime(due))
    p = rt.redis.pipeline(transaction=True)
    p.hset(rt.state.key(run_id, "st"), node.id, "waiting")
    p.hset(wake_key, node.id, repr(due))
    p.hset(rt.state.key(run_id, "info"), node.id, json.dumps({"started_at": started.isoformat(), "gen": gen}))
    p.execute()
    rt.redis.zadd(index_key(rt.settings), {member(run_id, node.id, gen): due})
    rt.state.transition(run_id, ("running",), "waiting")  # the journal moved with the step
    return False


# -- the timer service's side ----------------------------------------------------------------------
def due(rt: Runtime, limit: int) -> list[str]:
    """Index members due now, earliest first, at most ``limit``."""
    raw = rt.redis.zrangebyscore(index_key(rt.settings), "-inf", now(rt.settings), start=0, num=limit)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]


class Taken(NamedTuple):
    """A sleep step woken: its info (when it fell asleep) and what it hands on; ``resumed`` when
    its run moved from ``waiting`` back to ``running`` (no other step of it waits): the journal
    must follow."""

    info: dict[str, Any]
    value: Any
    resumed: bool


def take(rt: Runtime, due_steps: list[tuple[str, int, StepNode]]) -> list[Taken | None]:
    """Wake due sleep steps ``(run, generation, node)``, each once, in one round trip (with the
    results each hands on): for each, None when it is not the one to wake (completed already,
    an old generation, or the run is no longer active)."""
    reads = [sorted(node.reads()) for _, _, node in due_steps]
    calls = [
        ([rt.state.key(run_id, part) for part in ("meta", "st", "info", "res")], [node.id, str(gen), *ids])
        for (run_id, gen, node), ids in zip(due_steps, reads, strict=True)
    ]
    out: list[Taken | None] = []
    for (_, _, node), ids, reply in zip(due_steps, reads, run_scripts(rt.redis, _TAKE, calls), strict=True):
        if not int(reply[0]):
            out.append(None)
            continue
        results = {sid: json.loads(raw) for sid, raw in zip(ids, reply[2:], strict=True) if raw}
        value = resolve(node.args[0], results) if node.args else None
        out.append(Taken(json.loads(reply[1]), value, int(reply[0]) == 2))
    return out


def next_due(rt: Runtime) -> float:
    """When the earliest timer in the index is due (infinity when none is)."""
    first = rt.redis.zrange(index_key(rt.settings), 0, 0, withscores=True)
    return float(first[0][1]) if first else math.inf


def drop(rt: Runtime, members: Iterable[str]) -> None:
    """Remove fired (or stale) timers from the index."""
    members = list(members)
    if members:
        rt.redis.zrem(index_key(rt.settings), *members)


def rearm(rt: Runtime, sleeping: list[tuple[str, int, list[str]]]) -> int:
    """Put back in the index the timers of steps still waiting in a sleep (``(run, generation,
    steps)`` each): a crash between the run's state and the index, or an index lost alone,
    leaves none asleep for good. Two round trips for all of them; the count put back."""
    if not sleeping:
        return 0
    p = rt.redis.pipeline(transaction=False)
    for run_id, _, steps in sleeping:
        p.hmget(rt.state.key(run_id, WAKE), steps)
    found: dict[str, float] = {}
    for (run_id, gen, steps), dues in zip(sleeping, p.execute(), strict=True):
        for step_id, raw in zip(steps, dues, strict=True):
            if raw is not None:
                found[member(run_id, step_id, gen)] = float(raw)
    if not found:
        return 0
    added = rt.redis.zadd(index_key(rt.settings), cast(Mapping[Any, Any], found), nx=True)
    return int(cast(int, added))


def asleep(rt: Runtime) -> int:
    """Timers in the index (the runs asleep, and fired ones not yet removed)."""
    return int(rt.redis.zcard(index_key(rt.settings)))
