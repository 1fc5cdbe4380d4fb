-- Shuffle: ARGV base, then every pre-queue place id in its new (random)
-- order. Applied once: the places take turns 1..n in that order and the
-- pre-queue is gone. Answers 1 applied, 0 already applied, -1 the list is
-- not the pre-queue (it changed; read it again).
if redis.call('HGET', K_META, 'shuffled') == '1' then return 0 end
local n = #ARGV - 1
if redis.call('ZCARD', K_PRE) ~= n then return -1 end
for i = 2, #ARGV do
  if not redis.call('ZSCORE', K_PRE, ARGV[i]) then return -1 end
end
for i = 2, #ARGV do
  redis.call('ZADD', K_WAIT, i - 1, ARGV[i])
end
redis.call('DEL', K_PRE)
redis.call('HSET', K_META, 'shuffled', '1', 'open', '1')
return 1
