-- analytics_merge.lua - the common case of the fold, summed by the actor
--
-- The same end state as analytics_fold.lua for a batch whose events need
-- no judging: none was folded in before and none is void. The actor
-- (hgp_sums.c) has added the events' contributions up per target; this
-- script checks that the batch really is such a batch and then writes
-- one command per target instead of judging every event.
--
-- KEYS[1] the applied offsets (hash partition -> offset), KEYS[2] the
-- state they belong to, KEYS[3] the fences seen (field "<partition> <log
-- id>"). ARGV: the state this actor read from, now (ms), bucket, span,
-- the count of events (what is returned as applied), np, then np times
-- (partition, first offset, last offset) of the batch, na, then na times
-- "<partition> <log id>" of every producer of an event in the batch,
-- then the targets to the end, each
--   'z', key, expire ('' = none), n, then n times (member, increment)
--   'h', key, keep until, n, then n times (field, increment)
--   'u', key, '', n, then n user ids (PFADD into the HyperLogLog)
-- Returns {applied, 0, 0}; {-1, 0, 0} when the state is another (nothing
-- done); {-9, 0, 0} when a partition's applied offset is at or past the
-- batch's first, or a producer was fenced in that partition: nothing is
-- done and the actor folds the batch with analytics_fold.lua, which
-- judges event by event.
--
-- As in analytics_fold.lua: an all-time member whose score ends at 0 is
-- removed; a set with an expiry gets PEXPIREAT; a minute hash's expiry
-- only moves later, and a hash with more than span/bucket + 8 fields is
-- trimmed to the span. Both are looked at only when one of the hash's
-- fields was new (HINCRBY answered just the increment): a field that was
-- there already was made by an earlier fold, which set the expiry its
-- bucket needs, and added no field. So a resource costs its HINCRBY, not
-- three commands, in all but the first fold of each minute.

if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1, 0, 0} end
local now, bucket, span = tonumber(ARGV[2]), tonumber(ARGV[3]),
                          tonumber(ARGV[4])
local keep = span / bucket
local np = tonumber(ARGV[6])
local i = 7
local function hmget (k, fields)
  local out = {}
  for j = 1, #fields, 1000 do
    local part = redis.call('HMGET', k,
                            unpack(fields, j, math.min(j + 999, #fields)))
    for n = 1, #part do out[#out + 1] = part[n] end
  end
  return out
end
local parts, moves = {}, {}
for j = 0, np - 1 do
  parts[#parts + 1] = ARGV[i + 3 * j]
  moves[#moves + 1] = ARGV[i + 3 * j]
  moves[#moves + 1] = ARGV[i + 3 * j + 2]
end
local done = hmget(KEYS[1], parts)
for j = 0, np - 1 do
  if done[j + 1] and tonumber(done[j + 1]) >= tonumber(ARGV[i + 3 * j + 1])
  then
    return {-9, 0, 0}
  end
end
i = i + 3 * np
local na = tonumber(ARGV[i])
local asked = {}
for j = i + 1, i + na do asked[#asked + 1] = ARGV[j] end
for _, seen in ipairs(hmget(KEYS[3], asked)) do
  if seen then return {-9, 0, 0} end
end
i = i + na + 1
while i <= #ARGV do
  local kind, k, ex, n = ARGV[i], ARGV[i + 1], ARGV[i + 2],
                         tonumber(ARGV[i + 3])
  i = i + 4
  if kind == 'u' then
    for j = i, i + n - 1, 1000 do
      redis.call('PFADD', k, unpack(ARGV, j, math.min(j + 999, i + n - 1)))
    end
    i = i + n
  elseif kind == 'z' then
    for j = i, i + 2 * n - 1, 2 do
      if tonumber(redis.call('ZINCRBY', k, ARGV[j + 1], ARGV[j])) == 0
      and ex == '' then
        redis.call('ZREM', k, ARGV[j])
      end
    end
    if ex ~= '' then redis.call('PEXPIREAT', k, ex) end
    i = i + 2 * n
  else
    local fresh = false
    for j = i, i + 2 * n - 1, 2 do
      if redis.call('HINCRBY', k, ARGV[j], ARGV[j + 1])
         == tonumber(ARGV[j + 1]) then
        fresh = true
      end
    end
    if fresh and redis.call('PEXPIRETIME', k) < tonumber(ex) then
      redis.call('PEXPIREAT', k, ex)
    end
    if fresh and redis.call('HLEN', k) > keep + 8 then
      local lo = math.floor(now / bucket) - keep
      for _, field in ipairs(redis.call('HKEYS', k)) do
        if tonumber(field) <= lo then redis.call('HDEL', k, field) end
      end
    end
    i = i + 2 * n
  end
end
for j = 1, #moves, 1000 do
  redis.call('HSET', KEYS[1], unpack(moves, j, math.min(j + 999, #moves)))
end
return {tonumber(ARGV[5]), 0, 0}
