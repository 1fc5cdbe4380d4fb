-- Poll, for one or more places of the queue at once (store coalesces
-- concurrent polls): ARGV base, id... Answers one entry per id, in order:
-- {place, first} where first is 1 the first time an admitted place is
-- read (for the admission lag), or {} for no such place. It changes no
-- queue-wide field, so it memoizes them: a waiting place costs one HMGET
-- and one ZRANK.
memoize()
local now = now_ms()
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local f = read(id)
  if not f[1] then
    out[#out + 1] = {}
  else
    local st = lapse(id, f[1], f[3], now)
    local first = 0
    if st == 'admitted' and redis.call('HSETNX', pkey(id), 'seen', '1') == 1 then first = 1 end
    out[#out + 1] = {answer(id, st, f), first}
  end
end
return out
