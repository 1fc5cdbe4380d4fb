-- SetPasses: ARGV base, then pairs of id, pass. Keeps the first pass signed
-- for each admitted place and answers, per pair, the one kept ('' when the
-- place is not admitted). One call for every place a step admitted: a
-- round trip each made a step of 40 places take most of a second on a
-- busy machine, and a late step loses the credit past its burst.
local out = {}
for i = 2, #ARGV - 1, 2 do
  local k = pkey(ARGV[i])
  if redis.call('HGET', k, 'status') ~= 'admitted' then
    out[#out + 1] = ''
  else
    redis.call('HSETNX', k, 'pass', ARGV[i + 1])
    out[#out + 1] = redis.call('HGET', k, 'pass')
  end
end
return out
