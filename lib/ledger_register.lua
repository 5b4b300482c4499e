-- ledger_register.lua - register ARGV[1]: registry entry, fresh
-- watermarks, lease, and its place among the identities ever registered
-- (KEYS[4], never removed).
-- The first registration of each partition also sets where that list
-- began (KEYS[5]: the partition's end then): below it, the log holds
-- records older than the list, which it cannot vouch for.

redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
redis.call('DEL', KEYS[2])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('HSETNX', KEYS[5], ARGV[i], tonumber(ARGV[i + 1]) + 1)
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return 1
