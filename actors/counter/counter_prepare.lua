-- counter_prepare.lua - step 1 of the counter's logged path: write each
-- new increment's request record, a *promise*, before the events go to
-- the log.
--
-- KEYS: registry, our lease, the n record keys, then each counter key of
-- the batch once (its slot). ARGV: our log id, the lease (ms), the record
-- TTL, then per increment its slot and its delta. Returns -9 when our
-- lease is gone (nothing written), else {results, values, batch}: values
-- holds each slot's counter as read first, batch the number this script
-- gave the batch, results per increment:
--   {0, v} new: a promise written, v the value it predicts ("" when it
--          cannot: past 2^53, where Lua's doubles are not exact)
--   {6, v} our own promise of an earlier batch that was never applied
--          (an attempt we never logged): promised again in this batch
--   {3, ""} ours, earlier in this batch (the same id twice)
--   {1, value} applied already; {-1, ""} id used for another increment
--   {2, owner} pending at a live actor; {5, owner} pending at a dead
--          actor not recovered yet; {-3, err} Redis refused.
--
-- A promise is "<ck> <delta> <v>?<batch>" (or "<ck> <delta> ?<batch>"
-- without a prediction), the batch a number from hgp:batches. The batch's
-- own key hgp:b:<batch> says whose it is, "p <log id>" (pending), until
-- the script that applies the batch (ledger_apply.lua) makes it "k <log
-- id> <counter keys>" (kept): the increment is then applied with value v,
-- unless its counter key is listed. So applying a whole batch costs one
-- INCRBY per counter key and one write of its key, instead of a record per
-- request, and a record names its writer in a few digits.
-- v is predicted from the counter as read here plus the deltas before it
-- in this batch that this script promised (codes 0 and 6, in order); the
-- apply checks the counter still holds what was read here before it
-- relies on that. A pending record of an actor that is neither alive nor
-- registered any more was recovered (its event, if any, would have been
-- applied), so we take it over. One SET NX GET per increment writes a new
-- promise and reads an old record at once; only an old one costs string
-- work.

if redis.call('PEXPIRE', KEYS[2], ARGV[2]) == 0 then return -9 end
local me, ttl = ARGV[1], ARGV[3]
local n = (#ARGV - 3) / 2
local LIM = 9007199254740992
local values = redis.call('MGET', unpack(KEYS, n + 3))
local cur = {}
for s = 1, #values do
  if not values[s] then
    -- absent, or not a string: GET fails the script for the latter
    values[s] = redis.call('GET', KEYS[n + 2 + s]) or '0'
  end
  local c = tonumber(values[s])
  if c and c < LIM and c > -LIM and string.format('%d', c) == values[s] then
    cur[s] = c
  end
end
-- The batch's key outlives its records (written after it, same TTL)
local batch = tostring(redis.call('INCR', 'hgp:batches'))
redis.call('SET', 'hgp:b:' .. batch, 'p ' .. me, 'EX', tonumber(ttl) + 60)
local suffix = '?' .. batch
local out, early = {}, {3, ''}

-- The promise for increment i (its head "<ck> <delta> "), and the
-- counter's value after it when predictable (nil otherwise)
local function s_promise (s, head, delta)
  local c = cur[s]
  local d = tonumber(delta)
  if c and d and d < LIM and d > -LIM then
    local v = c + d
    if v < LIM and v > -LIM then
      local text = string.format('%d', v)
      return head .. text .. suffix, v, text
    end
  end
  return head .. suffix, nil, ''
end

-- A record after its head: kind ('f' final, 'p' promise or pending),
-- value ('' when none), owner (nil: its batch's key is gone), batch, and
-- whether its batch kept the promise on ck
local function s_parse (rec, hl, ck)
  local v, q = string.match(rec, '^(%-?%d*)%?(%S+)$', hl + 1)
  if not q then return 'f', string.match(rec, '^%-?%d+', hl + 1) end
  if not string.find(q, '^%d+$') then return 'p', v, q end  -- "?<log id>"
  local b = redis.call('GET', 'hgp:b:' .. q)
  if not b then return 'p', v, nil, q end
  local kind, owner, rest = string.match(b, '^(%a) (%S+)(.*)$')
  local kept = kind == 'k' and v ~= ''
               and not string.find(rest .. ' ', ' ' .. ck .. ' ', 1, true)
  return 'p', v, owner, q, kept
end

for i = 1, n do
  local rk, s, delta = KEYS[i + 2], tonumber(ARGV[2 + 2 * i]), ARGV[3 + 2 * i]
  local ck = KEYS[n + 2 + s]
  local head = ck .. ' ' .. delta .. ' '
  local p, v, text = s_promise (s, head, delta)
  local rec = redis.pcall('SET', rk, p, 'NX', 'GET', 'EX', ttl)
  local take = false
  if not rec then
    out[i] = {0, text}
    if v then cur[s] = v else cur[s] = nil end
  elseif type(rec) == 'table' then
    out[i] = {-3, rec.err}
  elseif string.sub(rec, 1, #head) ~= head then
    out[i] = {-1, ''}
  else
    local kind, value, owner, b, kept = s_parse (rec, #head, ck)
    if kind == 'f' or kept then
      out[i] = {1, value}              -- applied, or a promise kept
    elseif b == batch then
      out[i] = early
    elseif not owner then
      take = 0                          -- its batch is forgotten: expired
    elseif owner == me then
      take = 6                          -- ours, never applied
    elseif redis.call('EXISTS', 'hgp:lease:' .. owner) == 1 then
      out[i] = {2, owner}
    elseif redis.call('HEXISTS', KEYS[1], owner) == 1 then
      out[i] = {5, owner}
    else
      take = 0                          -- recovered: take it over
    end
  end
  if take then
    local r = redis.pcall('SET', rk, p, 'EX', ttl)
    if type(r) == 'table' and r.err then
      out[i] = {-3, r.err}
    else
      out[i] = {take, text}
      if v then cur[s] = v else cur[s] = nil end
    end
  end
end
return {out, values, batch}
