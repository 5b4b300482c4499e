-- ledger_leave.lua - an actor that stops cleanly, with all its events applied

redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
