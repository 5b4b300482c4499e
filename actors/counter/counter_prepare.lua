-- counter_prepare.lua - step 1 of the counter's logged path: write the
-- pending records before the events go to the log.
--
-- KEYS: registry, our lease, the n record keys, then each counter key of
-- the batch's increments once. ARGV: our log id, the lease (ms), the
-- record TTL, then the n pending records "<ck> <delta> ?<log id>".
-- Returns -9 when our lease is gone (nothing written), else {results,
-- values}: values holds each counter key's value, results per increment:
-- {0, ""} new, pending record written; {1, value} applied already;
-- {-1, ""} id used for another increment; {2, owner} pending at a live
-- actor; {5, owner} pending at a dead actor not recovered yet; {3, ""}
-- pending by us (earlier in this batch, or an attempt we never logged: its
-- TTL is renewed, so every record we apply was written or refreshed here);
-- {-3, err} Redis refused. A pending record of an actor that is neither
-- alive nor registered any more was recovered (its event, if any, would
-- have been applied), so we take it over. One SET NX GET per increment
-- writes a new record and reads an old one at once (Redis 7.0); only an
-- old one costs string work. The counters are read with one MGET; one it
-- finds absent is read again with GET, which fails the script, as it
-- always did, when the key holds something else than a string.

if redis.call('PEXPIRE', KEYS[2], ARGV[2]) == 0 then return -9 end
local ttl, n, out, new = ARGV[3], #ARGV - 3, {}, {0, ''}
local tail = #ARGV[1] + 1
for i = 1, n do
  local rk, p = KEYS[i + 2], ARGV[i + 3]
  local rec = redis.pcall('SET', rk, p, 'NX', 'GET', 'EX', ttl)
  if not rec then
    out[i] = new
  elseif type(rec) == 'table' then
    out[i] = {-3, rec.err}
  elseif rec == p then
    redis.call('EXPIRE', rk, ttl)
    out[i] = {3, ''}
  else
    local hl = #p - tail
    if string.sub(rec, 1, hl) ~= string.sub(p, 1, hl) then
      out[i] = {-1, ''}
    elseif string.byte(rec, hl + 1) ~= 63 then
      out[i] = {1, string.match(rec, '^%-?%d+', hl + 1)}
    else
      local owner = string.sub(rec, hl + 2)
      if redis.call('EXISTS', 'hgp:lease:' .. owner) == 1 then
        out[i] = {2, owner}
      elseif redis.call('HEXISTS', KEYS[1], owner) == 1 then
        out[i] = {5, owner}
      else
        local r = redis.pcall('SET', rk, p, 'EX', ttl)
        if type(r) == 'table' and r.err then
          out[i] = {-3, r.err}
        else
          out[i] = new
        end
      end
    end
  end
end
local values = redis.call('MGET', unpack(KEYS, n + 3))
for k = 1, #values do
  if not values[k] then
    values[k] = redis.call('GET', KEYS[n + 2 + k]) or '0'
  end
end
return {out, values}
