"""The Lua scripts of a run's hot-path state (:mod:`canvasflow.workflows.runtime.state`).

Each is one atomic step of a run in Redis, so that duplicated or racing deliveries agree on a
single winner: a claim, a completion (releasing successors exactly once), a failure, a status
transition, a revoked or retrying step, a map chunk's result. The scripts that may end a run
begin with a shared prelude that stamps the run's end with Redis's own clock.
"""

from __future__ import annotations

CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
local gen = redis.call('HGET', KEYS[1], 'gen')
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur == 'succeeded' then return {'done', status or ''} end
if gen ~= ARGV[2] then return {'skip', 'stale'} end
if status ~= 'running' and status ~= 'waiting' then
  -- a delivery that died mid-body may have applied its effect: during a rollback it runs to
  -- completion (its idempotency key makes that safe) and is then compensated like any other
  if not (status == 'compensating' and cur == 'running') then
    if cur == 'queued' or cur == 'running' or cur == 'retrying' then
      redis.call('HSET', KEYS[2], ARGV[1], 'skipped')
    end
    return {'skip', status or ''}
  end
end
-- a delivery still 'running' never finished (its worker died): hand back what it claimed with
local prev = ''
if cur == 'running' then prev = redis.call('HGET', KEYS[4], ARGV[1]) or '' end
redis.call('HSET', KEYS[2], ARGV[1], 'running')
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
return {'run', status, n, prev}
"""

RETRYING = """
if redis.call('HGET', KEYS[1], ARGV[1]) == 'running' then redis.call('HSET', KEYS[1], ARGV[1], 'retrying') end
return 1
"""

# a run's end is stamped where it happens, with Redis's clock (``meta.ended``: epoch seconds), so a
# journal written later (the database was down) says when the run ended, not when SQL caught up;
# the prelude of each script that may end a run (COMPLETE, FAIL, TRANSITION): each includes it
_ENDED = """
local function ended(status)  -- KEYS[1] is the run's meta in every script it is prepended to
  if status == 'succeeded' or status == 'failed' or status == 'cancelled'
     or status == 'compensated' or status == 'compensation_failed' then
    local t = redis.call('TIME')
    redis.call('HSET', KEYS[1], 'ended', t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
  end
end
"""

COMPLETE = _ENDED + """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur == 'succeeded' then return {0} end
redis.call('HSET', KEYS[2], ARGV[1], 'succeeded')
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[6], ARGV[1], ARGV[3]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then  -- a late completion of a finished run: what it writes expires with the rest
  for _, k in ipairs({KEYS[2], KEYS[5], KEYS[6]}) do redis.call('PEXPIRE', k, ttl) end
end
local status = redis.call('HGET', KEYS[1], 'status')
local left = redis.call('DECR', KEYS[4])
local out = {1, status, left}
if status == 'running' or status == 'waiting' then
  for i = 4, #ARGV do
    if redis.call('HINCRBY', KEYS[3], ARGV[i], -1) == 0 then
      redis.call('HSET', KEYS[2], ARGV[i], 'queued')
      table.insert(out, ARGV[i])
    end
  end
  if left == 0 then
    redis.call('HSET', KEYS[1], 'status', 'succeeded')
    ended('succeeded')
    out[2] = 'finished'
  end
end
return out
"""

FAIL = _ENDED + """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
-- completed by another delivery: this failure is a superseded one's (cut off, then back)
if cur == 'succeeded' then return {0, 'superseded'} end
if cur ~= 'partial' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'running' or status == 'waiting' then
  redis.call('HSET', KEYS[1], 'status', ARGV[2])
  ended(ARGV[2])
  return {1, status}
end
return {0, status or ''}
"""

TRANSITION = _ENDED + """
local status = redis.call('HGET', KEYS[1], 'status')
for i = 2, #ARGV do
  if status == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', ARGV[1])
    ended(ARGV[1])
    return 1
  end
end
return 0
"""

REVOKED = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == 'queued' or cur == 'running' or cur == 'retrying' then
  redis.call('HSET', KEYS[1], ARGV[1], 'revoked')
  return 1
end
return 0
"""

CHUNK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return -1 end
redis.call('HSET', KEYS[3], ARGV[3] .. '#' .. ARGV[1], 'succeeded')
return redis.call('HINCRBY', KEYS[2], ARGV[3], -1)
"""
