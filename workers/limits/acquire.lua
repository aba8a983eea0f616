-- Acquire one limit for one delivery of a step, atomically, on the Redis server's clock.
--
-- KEYS[1]  the rate limit's theoretical arrival time (GCRA: a token bucket kept as one number)
-- KEYS[2]  the concurrency slots: a sorted set of holders scored by their lease's expiry (ms)
-- ARGV     interval_ms (0: no rate), tolerance_ms ((burst - 1) x interval), horizon_ms (how far
--          ahead a turn may be booked), concurrency (0: none), lease_ms, holder, paid ('1': this
--          delivery booked its turn of the rate already)
-- returns  {1, 0, now}        admitted: the rate turn is taken, and a slot is held by `holder`
--          {2, due, now}      a rate turn booked at `due` (ms): come back then, with paid = '1'
--          {0, wait, now}     nothing taken: come back in `wait` ms (-1: when a slot frees)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, tolerance, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local concurrency, lease, holder, paid = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]

if concurrency > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)  -- leases nobody renewed: their holder died
  if not redis.call('ZSCORE', KEYS[2], holder) and redis.call('ZCARD', KEYS[2]) >= concurrency then
    return {0, -1, now}
  end
end

if interval > 0 and paid ~= '1' then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local due = tat - tolerance
  if due < now then due = now end
  if due - now > horizon then
    return {0, due - now - horizon, now}
  end
  redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - now + 1000)
  if due > now then
    return {2, due, now}
  end
end

if concurrency > 0 then
  redis.call('ZADD', KEYS[2], now + lease, holder)
  redis.call('PEXPIRE', KEYS[2], lease * 2)
end
return {1, 0, now}
