-- Counts the waiters in the sorted set KEYS[1] (see mark_wait.lua) whose
-- wait has not ended by Redis's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
