-- Join: ARGV base, id, folded email, email, on_sale (ms or ''), off_sale
-- (ms or ''). KEYS[8] is the new place's key. Answers {'existing', place}
-- for an email with a live place, {'closed'} after off_sale, else
-- {'new', place}.
local id, folded, email = ARGV[2], ARGV[3], ARGV[4]
local on, off = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local old = redis.call('HGET', K_EMAILS, folded)
if old then
  local st = status(old, now)
  if st == 'waiting' or st == 'admitted' then
    return {'existing', render(old, st)}
  end
end
if off and now >= off then return {'closed'} end
local seq = redis.call('INCR', KEYS[6])
-- Before on_sale, and while the queue has never opened, a join goes to
-- the pre-queue; once open (even if on_sale is moved later), to the end.
if on and now < on and redis.call('HGET', K_META, 'open') ~= '1' then
  redis.call('ZADD', K_PRE, seq, id)
else
  redis.call('ZADD', K_WAIT, fmt(1e12 + seq), id)
  if redis.call('HSETNX', K_META, 'open', '1') == 1 then
    -- The first step's credit counts from here (or from on_sale).
    redis.call('HSET', K_META, 'opened', fmt(now))
  end
end
redis.call('HSET', KEYS[8], 'email', email, 'folded', folded, 'status', 'waiting', 'joined', fmt(now))
redis.call('HSET', K_EMAILS, folded, id)
return {'new', render(id, 'waiting')}
