-- Marks waiter ARGV[1] as waiting for a lock for ARGV[2] milliseconds, in the
-- sorted set KEYS[1] of waiters scored by when their wait ends. The clock is
-- Redis's own, the one clock every instance shares; a waiter that dies
-- without clearing its mark stops counting when its wait would have ended,
-- and marks past their end are dropped here. The set itself lives as long as
-- its longest wait.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + wait, ARGV[1])
if redis.call('PTTL', KEYS[1]) < wait then
    redis.call('PEXPIRE', KEYS[1], wait)
end
return 1
