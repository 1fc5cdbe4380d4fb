-- Done: ARGV base, id. The place's buyer confirmed a hold made with its
-- pass: an admitted place (or one whose pass has just expired) turns done.
-- Answers the status after, '' for no such place.
local id = ARGV[2]
local st = redis.call('HGET', pkey(id), 'status')
if not st then return '' end
if st == 'admitted' or st == 'expired' then
  finish(id, 'done')
  st = 'done'
end
return st
