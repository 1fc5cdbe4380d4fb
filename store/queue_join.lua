-- Join, for one or more joins at once (store coalesces concurrent joins),
-- taken in order as if one after the other: ARGV base, on_sale (ms or ''),
-- off_sale (ms or ''), then id, folded email, email for each join;
-- KEYS[8 + i] is the i-th join's new place key. Answers one entry per
-- join: {'existing', place} for an email with a live place (one joined
-- earlier in the same call included), {'closed'} after off_sale, else
-- {'new', place}.
local on, off = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
memoize()
-- Whether the queue has opened, read once; only this script's own HSETNX
-- changes it during the call.
local open = redis.call('HGET', K_META, 'open') == '1'

local function join(key, id, folded, email)
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
  if on and now < on and not open then
    redis.call('ZADD', K_PRE, seq, id)
    forget('pre')
  else
    redis.call('ZADD', K_WAIT, fmt(1e12 + seq), id)
    if not open then
      open = true
      if redis.call('HSETNX', K_META, 'open', '1') == 1 then
        -- The first step's credit counts from here (or from on_sale).
        redis.call('HSET', K_META, 'opened', fmt(now))
      end
    end
  end
  local joined = fmt(now)
  redis.call('HSET', key, 'email', email, 'folded', folded, 'status', 'waiting', 'joined', joined)
  redis.call('HSET', K_EMAILS, folded, id)
  -- The new place's fields are these: no need to read them back.
  return {'new', answer(id, 'waiting', {'waiting', joined, false})}
end

local out = {}
for j = 0, (#ARGV - 3) / 3 - 1 do
  local a = 4 + 3 * j
  out[#out + 1] = join(KEYS[9 + j], ARGV[a], ARGV[a + 1], ARGV[a + 2])
end
return out
