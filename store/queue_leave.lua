-- Leave: ARGV base, id. A waiting or admitted place turns left and gives up
-- its turn; any other is answered as it is. {} for no such place.
local id = ARGV[2]
local st = status(id, now_ms())
if not st then return {} end
if st == 'waiting' or st == 'admitted' then
  finish(id, 'left')
  st = 'left'
end
return render(id, st)
