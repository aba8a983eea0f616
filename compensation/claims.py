"""Atomic claims of the rollback (Redis Lua): who publishes a unit's compensation, who runs it.

* ``mark_dispatched``   the first caller that finds a unit ready publishes its compensation;
                        the mark records who and when, so a publisher that died before its
                        message left can be told apart from one whose message is queued
* ``take_over_dispatch`` a later caller re-publishes a unit whose publisher died or whose
                        message was never claimed in time (compare-and-set: one re-publisher)
* ``take_over_abandoned`` ... or a unit ``running`` whose lease expired: its process died and
                        no redelivery came (a whole worker gone, on the Redis broker)
* ``claim``             a delivery of a compensation may run it: ``new`` (first delivery),
                        ``retry`` (a Celery retry after a failed attempt), ``interrupted``
                        (the delivery that held it is gone: run again), ``held`` (another
                        delivery is at work now: defer), ``finished`` (nothing left to do),
                        ``exhausted`` (interrupted too often), ``once`` (interrupted, and the
                        compensation is ``at_most_once``: record it, do not run again)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from canvasflow.workflows.runtime.state import as_text

_MARK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], 'dispatched') == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

_TAKE_OVER = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'dispatched' then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

_ABANDONED = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'running' then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'dispatched')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

_CLAIM = """
local state = redis.call('HGET', KEYS[3], ARGV[5])
if state == 'compensated' or state == 'compensation_failed' then return {'finished', state} end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local kind = 'new'
local deliveries = 1
if raw then
  local c = cjson.decode(raw)
  deliveries = tonumber(c.deliveries) + 1
  if tonumber(ARGV[2]) > tonumber(c.retries) then
    kind = 'retry'
  else
    local lease = redis.call('GET', KEYS[2])
    if lease and lease ~= ARGV[6] then return {'held', lease} end
    kind = 'interrupted'
    if ARGV[7] == '1' then return {'once', tostring(deliveries)} end
    if deliveries > tonumber(ARGV[8]) then return {'exhausted', tostring(deliveries)} end
  end
end
local record = {holder=ARGV[3], retries=tonumber(ARGV[2]), deliveries=deliveries}
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[3], ARGV[5], 'running')
return {kind, tostring(deliveries)}
"""


_FINISH = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local holder = cjson.decode(raw).holder
  if holder ~= ARGV[4] then return {0, holder} end
end
local state = redis.call('HGET', KEYS[2], ARGV[2])
if state == 'compensated' or state == 'compensation_failed' then return {0, state} end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], ARGV[2], ARGV[5]) end
return {1, ''}
"""


@dataclass(frozen=True)
class CompClaim:
    kind: str  # new | retry | interrupted | held | finished | exhausted | once
    detail: str  # deliveries so far, the holder of a held lease, or the finished state


class RollbackClaims:
    """The claim scripts, bound to one Redis client and a run's key function."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._mark = client.register_script(_MARK)
        self._take_over = client.register_script(_TAKE_OVER)
        self._claim = client.register_script(_CLAIM)
        self._abandoned = client.register_script(_ABANDONED)
        self._finish = client.register_script(_FINISH)

    def mark_dispatched(self, comp_key: str, disp_key: str, unit: str, holder: str) -> bool:
        return bool(self._mark(keys=[comp_key, disp_key], args=[unit, _stamp(holder)]))

    def take_over_dispatch(self, comp_key: str, disp_key: str, unit: str, seen: str, holder: str) -> bool:
        return bool(self._take_over(keys=[comp_key, disp_key], args=[unit, seen, _stamp(holder)]))

    def take_over_abandoned(
        self, comp_key: str, disp_key: str, lease_key: str, unit: str, holder: str
    ) -> bool:
        """A unit ``running`` whose lease expired (its process died and nothing redelivered it,
        e.g. a whole worker gone on the Redis broker): mark it dispatched again, once."""
        return bool(self._abandoned(keys=[comp_key, disp_key, lease_key], args=[unit, _stamp(holder)]))

    def claim(
        self,
        *,
        claim_key: str,
        lease_key: str,
        comp_key: str,
        field: str,
        unit: str,
        retries: int,
        holder: str,
        lease_ms: int,
        at_most_once: bool,
        max_deliveries: int,
        dead_holder: str = "",
    ) -> CompClaim:
        out = self._claim(
            keys=[claim_key, lease_key, comp_key],
            args=[
                field,
                retries,
                holder,
                lease_ms,
                unit,
                dead_holder or "\x00",
                "1" if at_most_once else "0",
                max_deliveries,
            ],
        )
        return CompClaim(as_text(out[0]), as_text(out[1]))

    def finish(
        self,
        claim_key: str,
        comp_key: str,
        err_key: str,
        field: str,
        unit: str,
        status: str,
        holder: str,
        error: str,
    ) -> str | None:
        """Record a unit's end if ``holder`` still holds its claim and it is not finished yet;
        otherwise the newer holder, or the finished state, that fenced this late result."""
        out = self._finish(keys=[claim_key, comp_key, err_key], args=[field, unit, status, holder, error])
        return None if int(out[0]) else as_text(out[1])


def _stamp(holder: str) -> str:
    return json.dumps({"by": holder, "at": time.time()})


def parse_stamp(raw: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(as_text(raw)))
    except (TypeError, ValueError):
        return {}
