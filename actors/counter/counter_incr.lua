-- counter_incr.lua - the counter's plain path (counter/event_log off or
-- async): apply increments and record them, in one script.
--
-- KEYS: per increment its counter key and its record key. ARGV: the record
-- TTL (s), then each increment's delta. Result per increment: {0, value}
-- applied, {1, value} replayed, {-1, ""} id used for another key or
-- delta, {-2, err} overflow, {-3, err} refused by Redis for another
-- reason, {2, owner} an attempt is pending in the log (a sync actor's).
-- -1..-3 and 2 changed nothing: the record GET comes first and INCRBY is
-- the first write, run by pcall so its refusal (overflow, OOM, READONLY)
-- does not abort the script. Values beyond 2^53 are read back with GET:
-- Lua numbers are doubles, counters are int64.

-- A sync actor's records (counter_prepare.lua): after the head,
-- "<v>?<batch>" is a promise, applied with value v once hgp:b:<batch>
-- says "k <log id> ..." and does not list the counter key; "?<log id>" is
-- pending; "<v>[ <p>:<o>]" is applied. Returns kind, value, owner.
local function s_parse (rec, hl, ck)
  local v, q = string.match(rec, '^(%-?%d*)%?(%S+)$', hl + 1)
  if not q then return 'f', string.match(rec, '^%-?%d+', hl + 1) end
  if not string.find(q, '^%d+$') then return 'p', v, q end
  local b = redis.call('GET', 'hgp:b:' .. q)
  if not b then return 'p', v, 'batch ' .. q end
  local kind, owner, rest = string.match(b, '^(%a) (%S+)(.*)$')
  if kind == 'k' and v ~= ''
     and not string.find(rest .. ' ', ' ' .. ck .. ' ', 1, true) then
    return 'f', v
  end
  return 'p', v, owner
end

local out = {}
for i = 1, #KEYS / 2 do
  local ck, rk, delta = KEYS[2 * i - 1], KEYS[2 * i], ARGV[i + 1]
  local head = ck .. ' ' .. delta .. ' '
  local rec = redis.pcall('GET', rk)
  if type(rec) == 'table' and rec.err then
    out[i] = {-3, rec.err}
  elseif rec then
    if string.sub(rec, 1, #head) ~= head then
      out[i] = {-1, ''}
    else
      local kind, v, owner = s_parse (rec, #head, ck)
      if kind == 'f' then
        out[i] = {1, v}
      else
        out[i] = {2, owner}
      end
    end
  else
    local r = redis.pcall('INCRBY', ck, delta)
    if type(r) == 'table' and r.err then
      if string.find(r.err, 'overflow', 1, true) then
        out[i] = {-2, r.err}
      else
        out[i] = {-3, r.err}
      end
    else
      local value
      if r > -9007199254740992 and r < 9007199254740992 then
        value = string.format('%d', r)
      else
        value = redis.call('GET', ck)
      end
      redis.call('SET', rk, head .. value, 'EX', ARGV[1])
      out[i] = {0, value}
    end
  end
end
return out
