-- analytics_fold.lua - the fold script of hgp_analytics
--
-- Fold events into the sums. KEYS[1] the applied offsets, KEYS[2] the
-- state they belong to, KEYS[3] the fences seen (field "<partition>
-- <log id>", value the fence's offset). ARGV: now, window 1h, window
-- 24h, half-life, epoch, bucket, span (all ms), the state this actor
-- read from (else nothing is done: {-1, 0}), then per record partition,
-- offset, counter type ('' for a record that is not an event: only the
-- offset moves), resource, delta, ts, actor (of an event: who produced
-- it; of a non-event: the log id it fences, or ''), user (of an event
-- whose user counts among its counter's distinct users: added to the
-- HyperLogLog hgp:a:u:<len(r)>:<r>:<t>; else ''). An event whose actor
-- was fenced earlier in its partition is void (PROTOCOL.md section 10)
-- and only moves the offset. Returns {applied, skipped, void}.
--
-- The records are judged one by one, in order (offsets, fences, void
-- events), but what they add is summed in Lua first and written once per
-- distinct target at the end: one ZINCRBY per (set, resource), one
-- PEXPIREAT per window or trending set, one HINCRBY per (minute hash,
-- bucket) and one PEXPIRETIME and HLEN per minute hash, instead of about
-- twelve commands per event. Whether a "<partition> <log id>" was fenced
-- before the call is asked once for all of them (HMGET on KEYS[3]), and
-- a fence the call passes marks it for the events after it. The end
-- state is the one event-by-event ZINCRBYs leave: integer sums are exact
-- in a double (deltas under 2^39, at most 10000 per call, stay under
-- 2^53; a bigger delta goes to its minute hash at once, as its own
-- HINCRBY of the exact text), an all-time member whose final score is 0
-- is removed, and a net zero adds nothing (a window member at 0 ranks
-- nowhere either). Trending scores are floats: summing d * 2^x per
-- resource before the ZINCRBY changes only the rounding. The offsets
-- are read with one HMGET and written with one HSET.

if redis.call('GET', KEYS[2]) ~= ARGV[8] then return {-1, 0, 0} end
local now = tonumber(ARGV[1])
local wins = {{'1h', tonumber(ARGV[2])}, {'24h', tonumber(ARGV[3])}}
local half, epoch = tonumber(ARGV[4]), tonumber(ARGV[5])
local bucket, span = tonumber(ARGV[6]), tonumber(ARGV[7])
local keep = span / bucket
local done, moved, applied, skipped, void = {}, {}, 0, 0, 0
local fenced, sets, expires, hashes, untils = {}, {}, {}, {}, {}
local users = {}
local function hmget (k, fields)
  local out = {}
  for j = 1, #fields, 1000 do
    local part = redis.call('HMGET', k,
                            unpack(fields, j, math.min(j + 999, #fields)))
    for n = 1, #part do out[#out + 1] = part[n] end
  end
  return out
end
local function add (k, r, v, expire)
  local set = sets[k]
  if set == nil then set = {}; sets[k] = set end
  set[r] = (set[r] or 0) + v
  if expire and (expires[k] or 0) < expire then expires[k] = expire end
end
local parts, asked = {}, {}
for i = 9, #ARGV, 8 do
  if done[ARGV[i]] == nil then
    done[ARGV[i]] = -1
    parts[#parts + 1] = ARGV[i]
  end
  local fence = ARGV[i] .. ' ' .. ARGV[i + 6]
  if ARGV[i + 2] ~= '' and fenced[fence] == nil then
    fenced[fence] = false
    asked[#asked + 1] = fence
  end
end
local offs = hmget(KEYS[1], parts)
for j, part in ipairs(parts) do done[part] = tonumber(offs[j] or '-1') end
local seen = hmget(KEYS[3], asked)
for j, fence in ipairs(asked) do fenced[fence] = seen[j] ~= false end
for i = 9, #ARGV, 8 do
  local part, off = ARGV[i], tonumber(ARGV[i + 1])
  if off <= done[part] then
    skipped = skipped + 1
  else
    done[part] = off
    moved[part] = ARGV[i + 1]
    local t, who = ARGV[i + 2], ARGV[i + 6]
    local fence = part .. ' ' .. who
    if t == '' and who ~= '' then
      redis.call('HSETNX', KEYS[3], fence, ARGV[i + 1])
      fenced[fence] = true
    elseif t ~= '' then
      if fenced[fence] then
        void = void + 1
      else
        local r, dstr, ts = ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
        local d = tonumber(dstr)
        add('hgp:a:all:' .. t, r, -d, nil)
        for _, w in ipairs(wins) do
          local b = w[2] / 60
          local idx = math.floor(ts / b)
          local expire = (idx + 1) * b + w[2]
          if expire > now then
            add('hgp:a:w:' .. w[1] .. ':' .. t .. ':' .. idx, r, -d, expire)
          end
        end
        local e = math.floor(ts / epoch)
        if (e + 2) * epoch > now then
          local f = math.pow(2, (ts - e * epoch) / half)
          add('hgp:a:tr:' .. t .. ':' .. e, r, -d * f, (e + 2) * epoch)
        end
        local m = math.floor(ts / bucket)
        local until_ = (m + 1) * bucket + span
        if until_ > now then
          local k = 'hgp:a:m:' .. string.len(r) .. ':' .. r .. ':' .. t
          local h = hashes[k]
          if h == nil then h = {}; hashes[k] = h end
          if math.abs(d) < 549755813888 then
            h[m] = (h[m] or 0) + d
          else
            redis.call('HINCRBY', k, m, dstr)
          end
          if (untils[k] or 0) < until_ then untils[k] = until_ end
        end
        if ARGV[i + 7] ~= '' then
          local k = 'hgp:a:u:' .. string.len(r) .. ':' .. r .. ':' .. t
          local u = users[k]
          if u == nil then u = {}; users[k] = u end
          u[#u + 1] = ARGV[i + 7]
        end
        applied = applied + 1
      end
    end
  end
end
for k, set in pairs(sets) do
  for r, v in pairs(set) do
    if v ~= 0 and tonumber(redis.call('ZINCRBY', k, v, r)) == 0
    and expires[k] == nil then
      redis.call('ZREM', k, r)
    end
  end
  if expires[k] then redis.call('PEXPIREAT', k, expires[k]) end
end
for k, h in pairs(hashes) do
  for m, v in pairs(h) do
    if v ~= 0 then redis.call('HINCRBY', k, m, string.format('%d', v)) end
  end
  if redis.call('PEXPIRETIME', k) < untils[k] then
    redis.call('PEXPIREAT', k, untils[k])
  end
  if redis.call('HLEN', k) > keep + 8 then
    local lo = math.floor(now / bucket) - keep
    for _, field in ipairs(redis.call('HKEYS', k)) do
      if tonumber(field) <= lo then redis.call('HDEL', k, field) end
    end
  end
end
for k, u in pairs(users) do
  for j = 1, #u, 1000 do
    redis.call('PFADD', k, unpack(u, j, math.min(j + 999, #u)))
  end
end
local moves = {}
for part, off in pairs(moved) do
  moves[#moves + 1] = part
  moves[#moves + 1] = off
end
for j = 1, #moves, 1000 do
  redis.call('HSET', KEYS[1], unpack(moves, j, math.min(j + 999, #moves)))
end
return {applied, skipped, void}
