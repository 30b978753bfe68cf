"""The Lua scripts of the coordination store: one script per decision, so each decision is atomic.

A call costs one round trip: STEP carries what this client deferred since its last trip (settles, rate
give-backs), the attempt's reservation and its rate booking, and answers all of them at once.

Every script of a scope touches only keys tagged `{scope}`, so they share one hash slot (a Redis Cluster can
run them later), and every script reads the time from the Redis server (`TIME`), never from a client: the
clients' clocks may disagree, the server's is one. Times are milliseconds; amounts are dollars, stored as
decimal strings (`HINCRBYFLOAT`) and returned as strings (a Lua number in a reply is truncated to an integer).

The budget's keys (K = `cfnb:{scope}:`):

| key | type | holds |
|---|---|---|
| `K ledger` | hash | `epoch`, `spent`, `held`, `limit` (the last one reserved under), `rebuild_until` |
| `K holds` | hash | lease id -> `amount|owner`: the reservations held now |
| `K leases` | sorted set | lease id -> expiry (ms, server clock): renewed while the attempt runs |
| `K owners` | hash | `owner|spent`, `owner|held`, `owner|lapsed`: who spent what |

A lease that lapses (its owner stopped renewing it: the process was killed) is settled *as spent at its full
worst case* by whichever script runs next: the call may have been billed, so the money is never forgotten,
and the hold never blocks the budget for longer than the lease.

The epoch guards against a lost ledger (a Redis restarted without persistence, a failover that dropped
writes): a client that knew an epoch and finds none, or another one, joins the new epoch by adding what its
journal says it spent and holds. A new epoch refuses reservations for a short rebuild window, so every live
client has had a heartbeat's chance to add its share before money is reserved again.
"""

from __future__ import annotations

__all__ = ["JOIN", "LEARNED", "PAUSE", "REPORT", "SPEND", "STEP"]

_PREAMBLE = """
local LEDGER, HOLDS, LEASES, OWNERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function num(x) return tonumber(x) or 0 end
local function split(v)
  local sep = string.find(v, '|', 1, true)
  return tonumber(string.sub(v, 1, sep - 1)), string.sub(v, sep + 1)
end
local function add(owner, field, amount)
  redis.call('HINCRBYFLOAT', OWNERS, owner .. '|' .. field, amount)
end
-- Settle every lapsed lease as spent at its full amount (its owner died: the call may have been billed).
local function reap(now)
  local lapsed = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, 512)
  for _, id in ipairs(lapsed) do
    redis.call('ZREM', LEASES, id)
    local v = redis.call('HGET', HOLDS, id)
    if v then
      redis.call('HDEL', HOLDS, id)
      local amount, owner = split(v)
      redis.call('HINCRBYFLOAT', LEDGER, 'held', -amount)
      redis.call('HINCRBYFLOAT', LEDGER, 'spent', amount)
      add(owner, 'held', -amount)
      add(owner, 'spent', amount)
      add(owner, 'lapsed', amount)
    end
  end
end
local function figures()
  local spent, held = redis.call('HGET', LEDGER, 'spent'), redis.call('HGET', LEDGER, 'held')
  return {tostring(num(spent)), tostring(num(held))}
end
"""

SPEND = (
    _PREAMBLE
    + """
-- Money spent while the ledger could not be reached (coordination_failure='open'). ARGV: epoch, owner, usd
local epoch = redis.call('HGET', LEDGER, 'epoch')
if not epoch or epoch ~= ARGV[1] then return {'epoch', epoch or ''} end
redis.call('HINCRBYFLOAT', LEDGER, 'spent', tonumber(ARGV[3]))
add(ARGV[2], 'spent', tonumber(ARGV[3]))
local f = figures()
return {'ok', f[1], f[2]}
"""
)

JOIN = (
    _PREAMBLE
    + """
-- The heartbeat. ARGV: known epoch, a new epoch id (used if there is none), owner, lease ms (unused),
-- rebuild window ms, the owner's journal: spent, then lease id / amount / ms triples of its open holds (ms:
-- how long from now the lease should last: a renewed lease's length, or what is left of a fixed one).
-- Same epoch: renew the owner's leases. No or another epoch: add the journal to it (creating it if needed).
local now = now_ms()
local epoch = redis.call('HGET', LEDGER, 'epoch')
local owner = ARGV[3]
if epoch and epoch == ARGV[1] then
  reap(now)
  local lapsed = {}
  for i = 7, #ARGV, 3 do
    if redis.call('HEXISTS', HOLDS, ARGV[i]) == 1 then
      redis.call('ZADD', LEASES, 'XX', now + tonumber(ARGV[i + 2]), ARGV[i])
    else
      table.insert(lapsed, ARGV[i])
    end
  end
  local f = figures()
  return {'same', epoch, f[1], f[2], lapsed}
end
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', HOLDS, LEASES, OWNERS)
  local rebuild_until = now + tonumber(ARGV[5])
  redis.call('HSET', LEDGER, 'epoch', epoch, 'spent', '0', 'held', '0', 'rebuild_until', rebuild_until)
end
local spent = tonumber(ARGV[6])
if spent ~= 0 then
  redis.call('HINCRBYFLOAT', LEDGER, 'spent', spent)
  add(owner, 'spent', spent)
end
for i = 7, #ARGV, 3 do
  local amount = tonumber(ARGV[i + 1])
  redis.call('HSET', HOLDS, ARGV[i], ARGV[i + 1] .. '|' .. owner)
  redis.call('ZADD', LEASES, now + tonumber(ARGV[i + 2]), ARGV[i])
  redis.call('HINCRBYFLOAT', LEDGER, 'held', amount)
  add(owner, 'held', amount)
end
local f = figures()
return {'joined', epoch, f[1], f[2], {}}
"""
)

REPORT = (
    _PREAMBLE
    + """
reap(now_ms())
return {redis.call('HGETALL', LEDGER), redis.call('HGETALL', OWNERS)}
"""
)

STEP = (
    _PREAMBLE
    + """
-- One round trip per decision: what this client deferred (settles, rate give-backs), then at most one
-- reservation, then at most one rate booking (only if the reservation was granted or none was asked).
-- KEYS: ledger, holds, leases, owners, pause, then the GCRA keys of requests, input and output tokens.
-- ARGV[1]: these fields joined by '|' (one argument to encode and send, not dozens; no field holds a '|'):
--   epoch, owner, lease ms, the booking's burst ms,
--   n settles, then n x (lease id, cost),
--   n adjusts, then n x (limit 1-3, units (> 0 charge, < 0 give back), per minute, burst ms),
--   the reservation: lease id ('' = none), amount, limit ('' = none),
--   n limits to book (-1 = no booking; 0 = only the pause), then n x (limit 1-3, cost, per minute).
-- Returns 'status|spent|held|ms|gone,...': status 'ok' (ms = the wait the booking asks), 'wait', 'refuse',
-- 'rebuilding' (ms = the rest of the window) or 'epoch' (the ledger was lost or replaced: nothing of the
-- budget was applied; join, then ask again; a booking without a reservation is still made, and its wait is
-- in ms); `gone` lists settled leases that had lapsed first.
local packed = ARGV[1]
local ARGV = {}
for field in string.gmatch(packed .. '|', '([^|]*)|') do table.insert(ARGV, field) end
local t = redis.call('TIME')
local now_f = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local now = math.floor(now_f)
local PAUSE = KEYS[5]
local burst = tonumber(ARGV[4])
local function rate_store(key, tat)
  redis.call('SET', key, string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now_f)) + 60000)
end
local function tat_of(key) return tonumber(redis.call('GET', key) or 0) or 0 end
local i = 5
local settles = {}
for _ = 1, tonumber(ARGV[i]) do
  table.insert(settles, {ARGV[i + 1], tonumber(ARGV[i + 2])})
  i = i + 2
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do  -- rate corrections do not depend on the ledger: applied first, always
  local key, units, per_minute = KEYS[5 + tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local floor = now_f - tonumber(ARGV[i + 4])  -- no credit beyond the limit's burst
  rate_store(key, math.max(math.max(tat_of(key), floor) + units * 60000 / per_minute, floor))
  i = i + 4
end
i = i + 1
local lease, amount_s, limit = ARGV[i], ARGV[i + 1], ARGV[i + 2]
local amount = tonumber(amount_s)
i = i + 3
local status, ms, gone = 'ok', 0, {}
local epoch = redis.call('HGET', LEDGER, 'epoch')
if (#settles > 0 or lease ~= '') and (not epoch or epoch ~= ARGV[1]) then
  -- the ledger was lost or replaced: apply nothing of the budget (the client's join carries its settles)
  if lease ~= '' then return 'epoch|0|0|0|' end
  status = 'epoch'
elseif #settles > 0 or lease ~= '' then
  reap(now)
  for _, s in ipairs(settles) do
    local v = redis.call('HGET', HOLDS, s[1])
    if v then
      local held, owner = split(v)
      redis.call('HDEL', HOLDS, s[1])
      redis.call('ZREM', LEASES, s[1])
      redis.call('HINCRBYFLOAT', LEDGER, 'held', -held)
      redis.call('HINCRBYFLOAT', LEDGER, 'spent', s[2])
      add(owner, 'held', -held)
      add(owner, 'spent', s[2])
    else
      table.insert(gone, s[1])
    end
  end
  if lease ~= '' then
    local rebuild = num(redis.call('HGET', LEDGER, 'rebuild_until'))
    local f = figures()
    local spent, held = tonumber(f[1]), tonumber(f[2])
    if now < rebuild then
      status, ms = 'rebuilding', rebuild - now
    elseif limit ~= '' then
      redis.call('HSET', LEDGER, 'limit', limit)
      if spent + amount > tonumber(limit) + 1e-12 then
        status = 'refuse'
      elseif spent + held + amount > tonumber(limit) + 1e-12 then
        status = 'wait'
      end
    end
    if status == 'ok' then
      redis.call('HSET', HOLDS, lease, amount_s .. '|' .. ARGV[2])
      redis.call('ZADD', LEASES, now + tonumber(ARGV[3]), lease)
      redis.call('HINCRBYFLOAT', LEDGER, 'held', amount)
      add(ARGV[2], 'held', amount)
    end
  end
end
local n = tonumber(ARGV[i])
if (status == 'ok' or status == 'epoch') and n >= 0 then
  -- GCRA: book every limit's share for the earliest moment all of them (and the pause) allow it
  local go = math.max(now_f, tonumber(redis.call('GET', PAUSE) or 0) or 0)
  local keys, tats, spans = {}, {}, {}
  for j = 1, n do
    local key = KEYS[5 + tonumber(ARGV[i + 1])]
    local cost, per_minute = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    local span = cost * 60000 / per_minute
    local tat = tat_of(key)
    keys[j], tats[j], spans[j] = key, tat, span
    local allow = tat + span - math.max(burst, span)
    if allow > go then go = allow end
    i = i + 3
  end
  for j = 1, n do rate_store(keys[j], math.max(tats[j], go) + spans[j]) end
  ms = go - now_f
end
local f = figures()
return table.concat({status, f[1], f[2], string.format('%.3f', ms), table.concat(gone, ',')}, '|')
"""
)

# -- rate limits ---------------------------------------------------------------------------------------------
# The scope's pause is an absolute server time in ms; each GCRA key holds a theoretical arrival time (ms),
# booked by STEP. See `_limits.SmoothLimit` for the arithmetic, which is the same.

PAUSE = """
-- KEYS: pause. ARGV: ms. Extends, never shortens, a pause in force for every client of the scope.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local until_ms = now + tonumber(ARGV[1])
if until_ms > (tonumber(redis.call('GET', KEYS[1]) or 0) or 0) then
  redis.call('SET', KEYS[1], string.format('%.3f', until_ms), 'PX', math.ceil(tonumber(ARGV[1])) + 1000)
end
return 1
"""

LEARNED = """
-- KEYS: the scope's learned limits (hash kind -> per minute). ARGV: kind / per-minute pairs to record.
-- Returns every learned limit. They expire after an hour unrenewed: an organisation's tier can change.
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if #ARGV > 0 then redis.call('PEXPIRE', KEYS[1], 3600000) end
return redis.call('HGETALL', KEYS[1])
"""
