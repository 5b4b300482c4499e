-- ledger_fence.lua - keep the earliest fence offset of a partition
-- (KEYS[1] hash, ARGV[1] partition, ARGV[2] offset)

local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or tonumber(ARGV[2]) < tonumber(cur) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
