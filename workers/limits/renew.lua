-- Renew leases of concurrency slots, on the Redis server's clock; one slot set per call.
--
-- KEYS[1]  the slots (sorted set: holder -> lease expiry in ms)
-- ARGV     lease_ms, then the holders to renew
-- returns  how many were still held (a lease that expired meanwhile is not brought back)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
    renewed = renewed + 1
  end
end
if renewed > 0 then redis.call('PEXPIRE', KEYS[1], lease * 2) end
return renewed
