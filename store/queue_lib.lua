-- Shared by every waiting room script (store/queue.go prepends it). Every
-- key of one event's queue starts with the same base, which carries the
-- event's hash tag, so on Redis Cluster they all live in one slot:
--   KEYS[1] pre     sorted set: the pre-queue, by arrival (seq)
--   KEYS[2] wait    sorted set: waiting places, by turn
--   KEYS[3] adm     sorted set: admitted places, by pass expiry (ms)
--   KEYS[4] emails  hash: folded email -> its latest place id
--   KEYS[5] meta    hash: shuffled, open, opened (ms), last (ms), credit,
--                   admitted, sold_out (1 while the stock is gone: set and
--                   cleared by the admission step)
--   KEYS[6] seq     counter of arrivals
--   KEYS[7] took    sorted set: admitted places that booked with their
--                   pass, by pass expiry (ms): they reserve no stock
--   base..'p:'..id  hash: one place (email, folded, status, joined,
--                   admitted, pass_exp, pass, seen); made from ARGV[1],
--                   always of the same slot as KEYS.
-- Times are milliseconds of Redis's own clock (TIME), so every instance
-- reads one clock. Waiting places that joined after the pre-queue get turn
-- 1e12 + seq: always behind the pre-queue, whose shuffle gives it turns 1..n.
local K_PRE, K_WAIT, K_ADM, K_EMAILS, K_META, K_TOOK = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7]
local BASE = ARGV[1]
-- How long a place that is no longer live is kept for its buyer to read.
local KEEP_S = 86400

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function pkey(id) return BASE .. 'p:' .. id end

local function fmt(n) return string.format('%d', n) end

-- finish turns a place terminal: out of every set, its email free to join
-- again, kept a day for its buyer to read.
local function finish(id, status)
  local k = pkey(id)
  redis.call('ZREM', K_PRE, id)
  redis.call('ZREM', K_WAIT, id)
  redis.call('ZREM', K_ADM, id)
  redis.call('ZREM', K_TOOK, id)
  local folded = redis.call('HGET', k, 'folded')
  if folded and redis.call('HGET', K_EMAILS, folded) == id then
    redis.call('HDEL', K_EMAILS, folded)
  end
  redis.call('HSET', k, 'status', status)
  redis.call('EXPIRE', k, KEEP_S)
end

-- status reads a place's status, turning an admitted place whose pass has
-- run out expired on the way. false: no such place.
local function status(id, now)
  local k = pkey(id)
  local st = redis.call('HGET', k, 'status')
  if not st then return false end
  if st == 'admitted' then
    local exp = tonumber(redis.call('HGET', k, 'pass_exp'))
    if exp and exp <= now then
      finish(id, 'expired')
      st = 'expired'
    end
  end
  return st
end

-- shown is the status a place is answered with: a waiting place reads
-- sold_out while the queue's stock is gone (queue_admit.lua), so telling
-- every waiting place costs nothing per place; it reads waiting again if
-- the stock comes back.
local function shown(st)
  if st == 'waiting' and redis.call('HGET', K_META, 'sold_out') == '1' then return 'sold_out' end
  return st
end

-- position is 1 + the live places ahead, or -1 while unknown (the
-- pre-queue before its shuffle) or not waiting.
local function position(id, st)
  if st ~= 'waiting' then return -1 end
  local r = redis.call('ZRANK', K_WAIT, id)
  if not r then return -1 end
  -- While the shuffle moves the pre-queue over (queue_shuffle.lua), a
  -- later join still has all of it ahead: what moved is ranked, what has
  -- not is counted. A place that moved has only moved places ahead.
  if redis.call('HGET', K_META, 'shuffled') ~= '1' and tonumber(redis.call('ZSCORE', K_WAIT, id)) >= 1e12 then
    r = r + redis.call('ZCARD', K_PRE)
  end
  return r + 1
end

-- render is a place as the scripts answer it:
-- {id, status, position, joined, admitted, pass_exp, pass, email}.
local function render(id, st)
  st = shown(st)
  local f = redis.call('HMGET', pkey(id), 'joined', 'admitted', 'pass_exp', 'pass', 'email')
  return {id, st, position(id, st), tonumber(f[1]) or 0, tonumber(f[2]) or 0, tonumber(f[3]) or 0, f[4] or '', f[5] or ''}
end
