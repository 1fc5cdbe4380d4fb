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
--   KEYS[8] gone    sorted set: admitted places that went (done, left,
--                   expired) before a reading of the stock listed a
--                   booking of theirs, by when they went (ms; a left one
--                   by its pass's expiry): they still reserve stock until
--                   a reading taken after that
--   base..'p:'..id  hash: one place (email, folded, status, joined,
--                   admitted, pass_exp, pass, seen); made from ARGV[1],
--                   always of the same slot as KEYS.
-- Times are milliseconds of Redis's own clock (TIME), so every instance
-- reads one clock. Waiting places that joined after the pre-queue get turn
-- 1e12 + seq: always behind the pre-queue, whose shuffle gives it turns 1..n.
local K_PRE, K_WAIT, K_ADM, K_EMAILS, K_META, K_TOOK, K_GONE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[8]
local BASE = ARGV[1]
-- A place's hash is not among KEYS (the admission step finds its places as
-- it goes); it is safe on Redis Cluster because it shares the event's
-- hash tag, which only holds while BASE is the base of the KEYS given.
if KEYS[1] ~= BASE .. 'pre' then
  return redis.error_reply('queue: ARGV[1] ' .. tostring(BASE) .. ' is not the base of KEYS[1] ' .. tostring(KEYS[1]))
end
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
  -- An admitted place may have booked after the stock reading the next
  -- step applies was taken: that reading counts its tickets as still
  -- there, and once the place is out of the admitted set nothing else
  -- counts them. So it keeps reserving (in gone) until a reading that
  -- saw its booking, or was taken, horizon and all, after it went
  -- (queue_admit.lua); one that left, until after its pass expires,
  -- since leaving does not take the pass back and it may still book.
  -- Only where steps read the stock (stock_at set), and not once a
  -- reading listed its booking (took).
  if redis.call('ZSCORE', K_ADM, id) and not redis.call('ZSCORE', K_TOOK, id)
      and redis.call('HEXISTS', K_META, 'stock_at') == 1 then
    local at = now_ms()
    if status == 'left' then
      at = math.max(at, tonumber(redis.call('HGET', k, 'pass_exp')) or at)
    end
    redis.call('ZADD', K_GONE, fmt(at), id)
  end
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

-- lapse is the status of a place read as st with pass expiry exp: an
-- admitted place whose pass has run out turns expired on the way.
local function lapse(id, st, exp, now)
  if st == 'admitted' then
    exp = tonumber(exp)
    if exp and exp <= now then
      finish(id, 'expired')
      return 'expired'
    end
  end
  return st
end

-- status reads a place's status (see lapse). false: no such place.
local function status(id, now)
  local f = redis.call('HMGET', pkey(id), 'status', 'pass_exp')
  if not f[1] then return false end
  return lapse(id, f[1], f[2], now)
end

-- memo, once a script calls memoize, keeps the queue-wide fields a
-- place's answer reads for the rest of the script, so that a call of many
-- polls or joins reads them once. A script that calls it and changes one
-- of them forgets it (queue_join.lua, when it grows the pre-queue).
local memo = nil
local function memoize() memo = {} end

-- forget drops a memoized field the script itself just changed.
local function forget(name)
  if memo then memo[name] = nil end
end

local function queue_field(name, read)
  if not memo then return read() end
  if memo[name] == nil then memo[name] = read() end
  return memo[name]
end

local function sold_out()
  return queue_field('sold_out', function() return redis.call('HGET', K_META, 'sold_out') == '1' end)
end

local function shuffled()
  return queue_field('shuffled', function() return redis.call('HGET', K_META, 'shuffled') == '1' end)
end

local function pre_count()
  return queue_field('pre', function() return redis.call('ZCARD', K_PRE) end)
end

-- shown is the status a place is answered with: a waiting place reads
-- sold_out while the queue's stock is gone (queue_admit.lua), so telling
-- every waiting place costs nothing per place; it reads waiting again if
-- the stock comes back.
local function shown(st)
  if st == 'waiting' and sold_out() then return 'sold_out' end
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
  if not shuffled() then
    local pre = pre_count()
    if pre > 0 and tonumber(redis.call('ZSCORE', K_WAIT, id)) >= 1e12 then r = r + pre end
  end
  return r + 1
end

-- read is what answer needs of a place's hash, status first; f[1] is
-- false for no such place. Only an admitted place's answer needs more
-- (answer reads it), so a waiting place's poll reads three fields.
local function read(id)
  return redis.call('HMGET', pkey(id), 'status', 'joined', 'pass_exp')
end

-- answer is a place of status st and fields f (as read read them) as the
-- scripts answer it: one string, "id status position joined admitted
-- pass_exp pass email" with a newline after each field but the last, the
-- email, which is all that follows the seventh (store's placeOf parses
-- it). Times are milliseconds, position -1 for none, 0 or '' for no value.
local function answer(id, st, f)
  st = shown(st)
  local admitted, pass, email = '0', '', ''
  local exp = 0
  if st == 'admitted' then
    local more = redis.call('HMGET', pkey(id), 'admitted', 'pass', 'email')
    admitted, pass, email = more[1] or '0', more[2] or '', more[3] or ''
    exp = tonumber(f[3]) or 0
  end
  return id .. '\n' .. st .. '\n' .. fmt(position(id, st)) .. '\n' .. (f[2] or '0') .. '\n' .. admitted .. '\n' ..
    fmt(exp) .. '\n' .. pass .. '\n' .. email
end

-- render is a place of status st as the scripts answer it.
local function render(id, st) return answer(id, st, read(id)) end
