-- Deletes the lock KEYS[1] only if it still holds this holder's token
-- ARGV[1]: a holder whose TTL ran out must not delete the next holder's lock.
-- Returns 1 if it deleted the lock, 0 if the lock was not (or no longer) ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
