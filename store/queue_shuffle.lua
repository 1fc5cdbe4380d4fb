-- Shuffle, one part: ARGV base, owner (a token of this shuffle), lease
-- (ms), last ('1' on the last part of the owner's order), then pre-queue place ids in their new (random) order. The ids
-- still in the pre-queue move to the end of the turns handed out so far
-- (meta.turns), so the pre-queue takes turns 1..n over as many calls as it
-- needs: no call carries or blocks Redis for the whole of a large one. A
-- place that left meanwhile is not there to move and is skipped. Dropping
-- places from a uniformly random order leaves a uniformly random order, so
-- skips, and an owner that takes over another's half-done shuffle with its
-- own order of what is left, keep it fair.
--
-- One owner at a time: a part from another owner is refused while the
-- last part is younger than the lease (a shuffler that died is taken over
-- after it), so two orders never interleave. The first part opens the
-- queue, so every later join waits behind the pre-queue; until the last
-- part, admission answers 'shuffle' and admits nobody (queue_admit.lua),
-- and positions count what is still to move (position in queue_lib.lua).
--
-- Answers 1 this part finished the shuffle, 0 it was done before,
-- 2 moved and more of the pre-queue is left, -2 another owner holds it.
if redis.call('HGET', K_META, 'shuffled') == '1' then return 0 end
local owner, lease = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local held = redis.call('HMGET', K_META, 'shuffler', 'shuffler_at')
if held[1] and held[1] ~= owner and now - tonumber(held[2]) < lease then return -2 end
redis.call('HSET', K_META, 'shuffler', owner, 'shuffler_at', fmt(now))
if redis.call('HSETNX', K_META, 'open', '1') == 1 then
  redis.call('HSET', K_META, 'opened', fmt(now))
end
local turn = tonumber(redis.call('HGET', K_META, 'turns') or '0')
for i = 5, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', K_PRE, id) == 1 then
    turn = turn + 1
    redis.call('ZADD', K_WAIT, turn, id)
  end
end
redis.call('HSET', K_META, 'turns', fmt(turn))
if redis.call('ZCARD', K_PRE) > 0 then
  -- The owner's order missed places: it lets go, so whoever reads the
  -- pre-queue next moves the rest without waiting out the lease.
  if ARGV[4] == '1' then redis.call('HDEL', K_META, 'shuffler', 'shuffler_at') end
  return 2
end
redis.call('HSET', K_META, 'shuffled', '1')
redis.call('HDEL', K_META, 'shuffler', 'shuffler_at')
return 1
