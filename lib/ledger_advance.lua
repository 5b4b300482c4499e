-- ledger_advance.lua - move the watermark of a registered actor up
-- (never down)

if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[2], ARGV[2])
if not cur or tonumber(ARGV[3]) > tonumber(cur) then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
return 1
