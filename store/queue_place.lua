-- Poll: ARGV base, id. Answers {place, first} where first is 1 the first
-- time an admitted place is read (for the admission lag), or {} for no
-- such place.
local id = ARGV[2]
local st = status(id, now_ms())
if not st then return {} end
local first = 0
if st == 'admitted' and redis.call('HSETNX', pkey(id), 'seen', '1') == 1 then first = 1 end
return {render(id, st), first}
