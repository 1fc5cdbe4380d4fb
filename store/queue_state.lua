-- State: ARGV base, on_sale (ms or ''), off_sale (ms or ''). Answers
-- {state, waiting, admitted so far, now}.
local on, off = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local st = 'open'
if off and now >= off then st = 'closed'
elseif redis.call('HGET', K_META, 'sold_out') == '1' then st = 'sold_out'
elseif on and now < on then st = 'pre_queue' end
local waiting = redis.call('ZCARD', K_PRE) + redis.call('ZCARD', K_WAIT)
return {st, waiting, tonumber(redis.call('HGET', K_META, 'admitted')) or 0, now}
