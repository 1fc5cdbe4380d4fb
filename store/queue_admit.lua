-- Admit, the one atomic admission step every instance runs: ARGV base,
-- on_sale (ms or ''), off_sale (ms or ''), rate (places a second), burst
-- (most credit kept), max (most places to admit now: the caller's budget,
-- '' for no limit), pass_ttl (ms), then the stock ('' for none: admission
-- at the rate alone) read from PostgreSQL just before: available, pending,
-- reserve, when it was read (us, the database's clock), its horizon (us,
-- the same clock: no booking it cannot see was made before it; '' for
-- when it was read), then the
-- place ids that made a booking in the last few seconds
-- (store.queueTookWindow): each still admitted is kept in took.
--
-- The stock. An admitted place that has not held yet may still take up to
-- reserve tickets; one that held took its tickets out of available (and
-- any it gave back are available again). A place that went (done, left,
-- expired) since the reading was taken may have held after it, and keeps
-- reserving until a reading that saw it (the gone set). So the stock
-- still free for new places is
--   available - reserve x (live admitted places - those that held + gone),
-- counted here, atomically with the admissions, so two instances' steps
-- cannot both spend it; and each new place takes up to reserve of it, at
-- least one ticket, so the step admits at most ceil(free / reserve). With
-- nothing available and no pending hold the queue is sold out: the flag
-- meta.sold_out makes every waiting place read sold_out (render, in
-- queue_lib.lua) at the cost of one HGET per poll, whatever the queue's
-- length; a later step clears it if the stock comes back.
--
-- It first expires admitted places whose pass ran out. Then, from on_sale,
-- it adds rate x elapsed time to the stored credit (capped at burst) and
-- admits the next floor(credit) waiting places, at most max, in turn.
-- Places that left are already out of the set, so nothing stalls it.
-- Answers {state, admitted n, waiting, expired n, then per admitted place
-- id, email, joined, admitted, pass_exp}; state is 'pre_queue', 'closed',
-- 'shuffle' (the pre-queue must be shuffled first: nothing admitted) or
-- 'open'.
-- How much later than a place went a reading must be taken to have seen
-- any booking it made: the clocks' skew (NTP-small) and more.
local GONE_MARGIN_MS = 250
local on, off = tonumber(ARGV[2]), tonumber(ARGV[3])
local rate, burst, max, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local lapsed = redis.call('ZRANGEBYSCORE', K_ADM, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(lapsed) do
  if redis.call('HGET', pkey(id), 'status') == 'admitted' then
    finish(id, 'expired')
  else
    redis.call('ZREM', K_ADM, id)
    redis.call('ZREM', K_TOOK, id)
  end
end
if ARGV[8] ~= '' then
  local avail, pending, reserve = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
  -- ARGV[11] is when the stock was read. Steps of several instances read
  -- and apply out of order: a reading older than one already applied
  -- must neither clear the sold-out flag nor admit on tickets that may be
  -- gone since, so it admits nothing.
  local read_at = tonumber(ARGV[11])
  local seen = tonumber(redis.call('HGET', K_META, 'stock_at') or '0')
  local stale = read_at < seen
  if stale then
    avail = 0
  else
    redis.call('HSET', K_META, 'stock_at', ARGV[11])
    if avail <= 0 and pending == 0 then
      redis.call('HSET', K_META, 'sold_out', '1')
    else
      redis.call('HDEL', K_META, 'sold_out')
    end
    -- A place that went reserves until a reading that must see any
    -- booking it made (queue_lib.lua's finish): one taken after it went,
    -- and whose horizon is after it too, since a hold made before it went
    -- may commit long after (a loaded machine). The reading's times are
    -- the database's clock, the place's Redis's, so a margin for their
    -- skew.
    local seen_to = math.min(read_at, tonumber(ARGV[12]) or read_at)
    redis.call('ZREMRANGEBYSCORE', K_GONE, '-inf', '(' .. fmt(math.floor(seen_to / 1000) - GONE_MARGIN_MS))
  end
  for i = 13, #ARGV do
    local exp = redis.call('ZSCORE', K_ADM, ARGV[i])
    if exp then
      redis.call('ZADD', K_TOOK, exp, ARGV[i])
    elseif not stale then
      -- Gone, and this reading has its booking.
      redis.call('ZREM', K_GONE, ARGV[i])
    end
  end
  -- Every place still in the admitted set counts, its pass lapsed or not:
  -- the loop above finishes at most 1000 a step, and passes admitted in
  -- one second all lapse in the same millisecond, so above 1000 a second
  -- some lapse a step or more before a step finishes them (into gone).
  -- Until then they still reserve, as they will in gone. took holds only
  -- places still admitted (finish takes them out of both).
  local live = redis.call('ZCARD', K_ADM)
  local took = redis.call('ZCARD', K_TOOK)
  local gone = redis.call('ZCARD', K_GONE)
  local free = avail - reserve * (live - took + gone)
  local can = 0
  if free > 0 then can = math.ceil(free / reserve - 1e-9) end
  if not max or can < max then max = can end
end
local function waiting() return redis.call('ZCARD', K_PRE) + redis.call('ZCARD', K_WAIT) end
if off and now >= off then return {'closed', 0, waiting(), #lapsed} end
if on and now < on then return {'pre_queue', 0, waiting(), #lapsed} end
if redis.call('HGET', K_META, 'shuffled') ~= '1' then
  if redis.call('ZCARD', K_PRE) > 0 then return {'shuffle', 0, waiting(), #lapsed} end
  redis.call('HSET', K_META, 'shuffled', '1', 'open', '1')
end

local m = redis.call('HMGET', K_META, 'last', 'credit', 'opened')
local last, credit = tonumber(m[1]), tonumber(m[2]) or 0
-- The first step counts from on_sale, or from the first join of a queue
-- without one.
if not last then last = on or tonumber(m[3]) or now end
-- A clock that stepped back (a failover) adds nothing; a long pause adds
-- at most the burst.
local elapsed = now - last
if elapsed < 0 then elapsed = 0 end
credit = credit + rate * elapsed / 1000
if credit > burst then credit = burst end
local n = math.floor(credit)
if max and max < n then n = max end

local out = {'open', 0, 0, #lapsed}
local admitted = 0
while admitted < n do
  local popped = redis.call('ZPOPMIN', K_WAIT)
  if #popped == 0 then break end
  local id = popped[1]
  local k = pkey(id)
  -- A place no longer waiting (never expected) is dropped, not admitted.
  if redis.call('HGET', k, 'status') == 'waiting' then
    -- Whole seconds, as the pass's JWT exp is: the place stops reading
    -- admitted the moment its pass stops taking holds, not up to a second
    -- later.
    local exp = math.floor((now + ttl) / 1000) * 1000
    redis.call('HSET', k, 'status', 'admitted', 'admitted', fmt(now), 'pass_exp', fmt(exp))
    redis.call('ZADD', K_ADM, fmt(exp), id)
    admitted = admitted + 1
    local f = redis.call('HMGET', k, 'email', 'joined')
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = tonumber(f[2]) or 0
    out[#out + 1] = now
    out[#out + 1] = exp
  end
end
credit = credit - admitted
redis.call('HSET', K_META, 'last', fmt(now), 'credit', tostring(credit))
if admitted > 0 then redis.call('HINCRBY', K_META, 'admitted', admitted) end
out[2] = admitted
out[3] = waiting()
return out
