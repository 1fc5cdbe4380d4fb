-- SetPass: ARGV base, id, pass. Keeps the first pass signed for an
-- admitted place and answers the one kept ('' when the place is not
-- admitted).
local id = ARGV[2]
local k = pkey(id)
if redis.call('HGET', k, 'status') ~= 'admitted' then return '' end
redis.call('HSETNX', k, 'pass', ARGV[3])
return redis.call('HGET', k, 'pass')
