-- ledger_apply.lua - apply events, release pending records (hgp_ledger).
-- See hgp_ledger.h for the codes.
--
-- KEYS: 1 registry, 2 ARGV[2]'s watermarks, then one counter key per
-- group (2 + g), then one record key per event (2 + ng + e). ARGV: 1 ttl,
-- 2 actor, 3 '1' when the actor applies its own events, 4 ng, then (own
-- only) the number of events of each group, then 4 per event: op ('a'
-- apply, 'r' release), delta, head ("<ck> <delta> ", the records'
-- common start) and tail (" <partition>:<offset>"); then partition,
-- offset pairs: the highest offset of the events to apply per partition,
-- where ARGV[2]'s watermark moves when nothing was refused (a refused
-- event stays above it and is found again by recovery).
--
-- Not own (recovery, replay): every event is its own group, in log order,
-- through s_one: the record decides (applied: skip; another increment:
-- conflict; absent or pending: INCRBY, GET, write the final record).
--
-- Own (ARGV[3] '1'): nothing is done (-9) once the actor's lease is gone,
-- because whoever recovers it fences it in the log from then on
-- (hgp_ledger.h). The events of one counter key form a group, in batch
-- order; a group whose records are all the actor's own pending ones (or
-- gone) costs one INCRBY by the sum of its deltas, and each event's value
-- is the running sum from the value before. Lua numbers are doubles, so
-- that arithmetic is used only while every delta, partial sum and value
-- is below 2^53 in magnitude, where doubles are exact; otherwise (and
-- when INCRBY refuses, e.g. past int64) the INCRBY is undone if it was
-- done and the group goes through s_one like recovery, so its results
-- (overflow per event included) are today's.
-- Why the own path still reads the records (one MGET for the batch):
-- while our lease lives (it did at prepare and does now, and a lease
-- never comes back) nobody took our pending records over, and they were
-- written or refreshed at prepare with dedup_ttl, so normally each one
-- is ours. It is not when it expired or was deleted meanwhile (dedup_ttl
-- below the lease, an operator) and another actor recorded that id
-- since: a group with any record that is not exactly our pending one
-- (absent included: MGET cannot tell a record of another type) goes
-- through s_one, which applies nothing twice, as before. One MGET keeps
-- that without any assumption on the settings.

local ttl, actor, own = ARGV[1], ARGV[2], ARGV[3] == '1'
if own and
   redis.call('EXISTS', 'hgp:lease:' .. actor) == 0 then return -9 end
local track = actor ~= '' and redis.call('HEXISTS', KEYS[1], actor) == 1
local ng = tonumber(ARGV[4])
local a0 = own and 5 + ng or 5
local k0 = 2 + ng
local ne = #KEYS - k0
local mine = '?' .. actor
local LIM = 9007199254740992
local clean, out = true, {}
local recs = own and redis.call('MGET', unpack(KEYS, k0 + 1))
local function s_one (ck, e)
  local rk, a = KEYS[k0 + e], a0 + 4 * (e - 1)
  local head = ARGV[a + 2]
  local rec = redis.pcall('GET', rk)
  if type(rec) == 'table' and rec.err then
    clean = false
    return {-3, rec.err}
  end
  if ARGV[a] == 'r' then
    if rec == head .. mine then
      redis.call('DEL', rk)
      return {4, ''}
    end
    return {5, ''}
  end
  if rec and string.sub(rec, 1, #head) ~= head then return {-1, ''} end
  if rec and string.byte(rec, #head + 1) ~= 63 then
    return {1, string.match(rec, '^%-?%d+', #head + 1)}
  end
  local r = redis.pcall('INCRBY', ck, ARGV[a + 1])
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'overflow', 1, true) then return {-2, r.err} end
    clean = false
    return {-3, r.err}
  end
  local value = redis.call('GET', ck)
  redis.call('SET', rk, head .. value .. ARGV[a + 3], 'EX', ttl)
  return {0, value}
end
local function s_group (ck, e1, e2)
  local sums, sum, adds = {}, 0, 0
  for e = e1, e2 do
    local a = a0 + 4 * (e - 1)
    if ARGV[a] == 'a' then
      if recs[e] ~= ARGV[a + 2] .. mine then return false end
      local d = tonumber(ARGV[a + 1])
      sum = sum + d
      if d >= LIM or d <= -LIM or sum >= LIM or sum <= -LIM then
        return false
      end
      sums[e] = sum
      adds = adds + 1
    end
  end
  if adds == 0 then return false end
  local total = string.format('%d', sum)
  local r = redis.pcall('INCRBY', ck, total)
  if type(r) == 'table' then return false end
  local base = r - sum
  local exact = r < LIM and r > -LIM and base < LIM and base > -LIM
  for e = e1, e2 do
    local s = sums[e]
    if s and (base + s >= LIM or base + s <= -LIM) then exact = false end
  end
  if not exact then
    redis.call('DECRBY', ck, total)
    return false
  end
  for e = e1, e2 do
    local a = a0 + 4 * (e - 1)
    if sums[e] then
      local value = string.format('%d', base + sums[e])
      -- our pending record is there (checked above) with its TTL from
      -- prepare: KEEPTTL spares an expiry update per event
      redis.call('SET', KEYS[k0 + e], ARGV[a + 2] .. value .. ARGV[a + 3],
                 'KEEPTTL')
      out[e] = {0, value}
    else
      out[e] = s_one (ck, e)
    end
  end
  return true
end
local e = 1
for g = 1, ng do
  local ck, n = KEYS[2 + g], own and tonumber(ARGV[4 + g]) or 1
  if not (own and s_group (ck, e, e + n - 1)) then
    for i = e, e + n - 1 do out[i] = s_one (ck, i) end
  end
  e = e + n
end
local m0 = a0 + 4 * ne
if track and clean and m0 < #ARGV then
  local parts, moved = {}, {}
  for j = m0, #ARGV, 2 do parts[#parts + 1] = ARGV[j] end
  local cur = redis.call('HMGET', KEYS[2], unpack(parts))
  for m = 1, #parts do
    local off = ARGV[m0 + 2 * m - 1]
    if not cur[m] or tonumber(off) > tonumber(cur[m]) then
      moved[#moved + 1] = parts[m]
      moved[#moved + 1] = off
    end
  end
  if #moved > 0 then redis.call('HSET', KEYS[2], unpack(moved)) end
end
return out
