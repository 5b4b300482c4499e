-- ledger_forget.lua - forget a recovered actor (registry, watermarks,
-- lock, fences), if we still hold its lock

if redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return 1
