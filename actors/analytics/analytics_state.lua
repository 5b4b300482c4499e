-- analytics_state.lua - the state script of hgp_analytics
--
-- What the analytics state in Redis was built from: KEYS[1] holds
-- "<cluster id>/<topic> <epoch>". ARGV[1] is the log we read, ARGV[2] a
-- fresh epoch. Same log: {0, state}. A different log (a new mock cluster,
-- a topic made again: it starts at offset 0 again) or no state at all
-- (first start, or Redis was flushed): forget the offsets and start a new
-- epoch, {1 or 2, state}. Every actor whose epoch is not the current one
-- reads its partitions again from the start, so after a flush the
-- rankings are rebuilt from the log. Atomic, so that of two actors the
-- second sees the new epoch, not stale offsets.

local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  return {0, cur}
end
redis.call('DEL', KEYS[2], KEYS[3])
local state = ARGV[1] .. ' ' .. ARGV[2]
redis.call('SET', KEYS[1], state)
return {cur and 1 or 2, state}
