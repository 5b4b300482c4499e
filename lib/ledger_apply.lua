-- ledger_apply.lua - apply events, release pending records (hgp_ledger).
-- See hgp_ledger.h for the codes.
--
-- KEYS: 1 registry, 2 ARGV[2]'s watermarks, then the counter key of each
-- fast group (2 + f), then the counter key of each other group (2 + nf +
-- g), then one record key per event of those groups. ARGV: 1 ttl, 2
-- actor, 3 '1' when the actor applies its own batch, 4 ng (other
-- groups), 5 the batch (own: the number its prepare gave it) or '', 6 nf
-- (fast groups, own only),
-- 7 nx, then per fast group its sum and the counter's value at prepare,
-- then nx counter keys whose promises of this batch are not kept (own:
-- the other groups', and those of increments promised but neither
-- applied nor released here), then (own only) the number of events of
-- each other group, then 4 per event:
-- op ('a' apply, 'r' release), delta, head ("<ck> <delta> ", the records'
-- common start) and tail (" <partition>:<offset>"); then partition,
-- offset pairs: the highest offset of the events to apply per partition,
-- where ARGV[2]'s watermark moves when nothing was refused (a refused
-- event stays above it and is found again by recovery).
--
-- Records (counter_prepare.lua, PROTOCOL.md section 7): after the head,
-- "<value>[ <p>:<o>]" is applied; "<value>?<batch>" is a promise, applied
-- with that value once hgp:b:<batch> says "k <log id> ..." and does not
-- list the counter key ("?<batch>" has no value: pending until settled);
-- "?<log id>" is pending.
--
-- Not own (recovery, replay): every event is its own group, in log order,
-- through s_one: the record decides (applied or a kept promise: skip;
-- another increment: conflict; else: INCRBY, GET, write the final
-- record).
--
-- Own (ARGV[3] '1'): nothing is done (-9) once the actor's lease is gone,
-- because whoever recovers it fences it in the log from then on
-- (hgp_ledger.h). A fast group is a counter key whose events of this
-- batch all hold promises of this batch, predicted from the value the
-- prepare read (the C side checked the predictions are its own): if every
-- fast group's counter still holds that value, each costs one INCRBY by
-- its sum and no record write at all, and the batch's key, written last
-- ("k <actor> <counter keys>"), keeps their promises but for the counter
-- keys it lists (the nx keys, and a fast group whose INCRBY was refused). If one moved (a second writer
-- while brokers disagree, a recovery), nothing is written and {-8, {f,
-- ...}} names those groups, for the caller to send again as other
-- groups. Other groups are coalesced when every record is the actor's
-- own pending one: one INCRBY by the sum of its deltas, each event's
-- value the running sum from the value before, and each record written
-- final (KEEPTTL). Lua numbers are doubles, so that arithmetic is used
-- only while every delta, partial sum and value is below 2^53 in
-- magnitude; otherwise (and when INCRBY refuses, e.g. past int64) the
-- INCRBY is undone if it was done and the group goes through s_one like
-- recovery. Why Redis has all of a batch or nothing: a script's effects
-- reach the AOF and replicas as one transaction, and after a script's
-- first write Redis refuses none of its later writes for memory.
-- Returns {results of the other groups' events, results of the fast
-- groups ({0} or {-3, err})} when own, else the events' results.

local ttl, actor, own = ARGV[1], ARGV[2], ARGV[3] == '1'
if own and
   redis.call('EXISTS', 'hgp:lease:' .. actor) == 0 then return -9 end
local track = actor ~= '' and redis.call('HEXISTS', KEYS[1], actor) == 1
local ng, batch = tonumber(ARGV[4]), ARGV[5]
local nf = own and tonumber(ARGV[6]) or 0
local nx = own and tonumber(ARGV[7]) or 0
local f0 = 8                                -- first fast group's sum
local x0 = f0 + 2 * nf                      -- first key not kept
local g0 = x0 + nx                          -- own: first group count
local a0 = own and g0 + ng or g0            -- first event's op
local k0 = 2 + nf + ng                      -- before the first record key
local ne = #KEYS - k0
local mine = '?' .. actor
local LIM = 9007199254740992
local clean, out, fast = true, {}, {}

-- A record after its head: kind ('f' final, 'p' promise or pending),
-- value ('' when none), the promise's batch, and whether that batch kept
-- the promise on ck (never ours of this batch: not settled yet)
local function s_parse (rec, hl, ck)
  local v, q = string.match(rec, '^(%-?%d*)%?(%S+)$', hl + 1)
  if not q then return 'f', string.match(rec, '^%-?%d+', hl + 1) end
  if not string.find(q, '^%d+$') or (own and q == batch) then
    return 'p', v, q
  end
  local b = redis.call('GET', 'hgp:b:' .. q)
  local kept = b and v ~= '' and string.sub(b, 1, 2) == 'k '
               and not string.find(b .. ' ', ' ' .. ck .. ' ', 1, true)
  return 'p', v, q, kept
end

-- Is rec (after head) our pending record: of this batch, or the old form?
local function s_mine (rec, head)
  if not rec or string.sub(rec, 1, #head) ~= head then return false end
  if rec == head .. mine then return true end
  local v, q = string.match(rec, '^(%-?%d*)%?(%S+)$', #head + 1)
  return own and q == batch
end

-- The fast groups: all still at their prepare value, or nothing at all
if nf > 0 then
  local now = redis.call('MGET', unpack(KEYS, 3, 2 + nf))
  local moved = {}
  for f = 1, nf do
    if (now[f] or '0') ~= ARGV[f0 + 2 * f - 1] then moved[#moved + 1] = f end
  end
  if #moved > 0 then return {-8, moved} end
end
local mark = 'k ' .. actor   -- the batch's key: kept, but on the keys listed
for x = x0, x0 + nx - 1 do mark = mark .. ' ' .. ARGV[x] end
for f = 1, nf do
  local r = redis.pcall('INCRBY', KEYS[2 + f], ARGV[f0 + 2 * f - 2])
  if type(r) == 'table' then
    fast[f] = {-3, r.err or 'refused'}
    mark = mark .. ' ' .. KEYS[2 + f]
    clean = false
  else
    fast[f] = {0}
  end
end

local recs = own and ne > 0 and redis.call('MGET', unpack(KEYS, k0 + 1))
local function s_one (ck, e)
  local rk, a = KEYS[k0 + e], a0 + 4 * (e - 1)
  local head = ARGV[a + 2]
  local rec = redis.pcall('GET', rk)
  if type(rec) == 'table' and rec.err then
    clean = false
    return {-3, rec.err}
  end
  if ARGV[a] == 'r' then
    if s_mine (rec, head) then
      redis.call('DEL', rk)
      return {4, ''}
    end
    return {5, ''}
  end
  if rec and string.sub(rec, 1, #head) ~= head then return {-1, ''} end
  if rec then
    local kind, value, _, kept = s_parse (rec, #head, ck)
    if kind == 'f' or kept then return {1, value} end
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
      if not s_mine (recs[e], ARGV[a + 2]) then return false end
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
  local ck, n = KEYS[2 + nf + g], own and tonumber(ARGV[g0 + g - 1]) or 1
  if not (own and s_group (ck, e, e + n - 1)) then
    for i = e, e + n - 1 do out[i] = s_one (ck, i) end
  end
  e = e + n
end
if nf > 0 then
  -- after the first write: Redis refuses no more writes for memory
  redis.call('SET', 'hgp:b:' .. batch, mark, 'EX', tonumber(ttl) + 60)
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
if own then return {out, fast} end
return out
