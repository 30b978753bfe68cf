"""The Lua scripts of the coordination store: one script per decision, so each decision is atomic.

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

__all__ = ["ACQUIRE", "ADJUST", "JOIN", "LEARNED", "PAUSE", "REPORT", "RESERVE", "SETTLE", "SPEND"]

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

RESERVE = (
    _PREAMBLE
    + """
-- ARGV: known epoch, owner, lease id, amount, limit ('' = none), lease ms
local epoch = redis.call('HGET', LEDGER, 'epoch')
if not epoch or epoch ~= ARGV[1] then return {'epoch', epoch or ''} end
local now = now_ms()
local rebuild = num(redis.call('HGET', LEDGER, 'rebuild_until'))
if now < rebuild then return {'rebuilding', tostring(rebuild - now)} end
reap(now)
local f = figures()
local spent, held, amount = tonumber(f[1]), tonumber(f[2]), tonumber(ARGV[4])
if ARGV[5] ~= '' then
  local limit = tonumber(ARGV[5])
  redis.call('HSET', LEDGER, 'limit', ARGV[5])
  if spent + amount > limit + 1e-12 then return {'refuse', f[1], f[2]} end
  if spent + held + amount > limit + 1e-12 then return {'wait', f[1], f[2]} end
end
redis.call('HSET', HOLDS, ARGV[3], ARGV[4] .. '|' .. ARGV[2])
redis.call('ZADD', LEASES, now + tonumber(ARGV[6]), ARGV[3])
redis.call('HINCRBYFLOAT', LEDGER, 'held', amount)
add(ARGV[2], 'held', amount)
return {'ok', f[1], tostring(held + amount)}
"""
)

SETTLE = (
    _PREAMBLE
    + """
-- ARGV: known epoch, lease id, actual cost
local epoch = redis.call('HGET', LEDGER, 'epoch')
if not epoch or epoch ~= ARGV[1] then return {'epoch', epoch or ''} end
reap(now_ms())
local v = redis.call('HGET', HOLDS, ARGV[2])
if not v then
  local f = figures()
  return {'gone', f[1], f[2]}
end
local amount, owner = split(v)
local actual = tonumber(ARGV[3])
redis.call('HDEL', HOLDS, ARGV[2])
redis.call('ZREM', LEASES, ARGV[2])
redis.call('HINCRBYFLOAT', LEDGER, 'held', -amount)
redis.call('HINCRBYFLOAT', LEDGER, 'spent', actual)
add(owner, 'held', -amount)
add(owner, 'spent', actual)
local f = figures()
return {'ok', f[1], f[2]}
"""
)

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
-- The heartbeat. ARGV: known epoch, a new epoch id (used if there is none), owner, lease ms,
-- rebuild window ms, the owner's journal: spent, then lease id / amount pairs of its open holds.
-- Same epoch: renew the owner's leases. No or another epoch: add the journal to it (creating it if needed).
local now = now_ms()
local epoch = redis.call('HGET', LEDGER, 'epoch')
local owner, lease = ARGV[3], tonumber(ARGV[4])
if epoch and epoch == ARGV[1] then
  reap(now)
  local lapsed = {}
  for i = 7, #ARGV, 2 do
    if redis.call('HEXISTS', HOLDS, ARGV[i]) == 1 then
      redis.call('ZADD', LEASES, 'XX', now + lease, ARGV[i])
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
for i = 7, #ARGV, 2 do
  local amount = tonumber(ARGV[i + 1])
  redis.call('HSET', HOLDS, ARGV[i], ARGV[i + 1] .. '|' .. owner)
  redis.call('ZADD', LEASES, now + lease, ARGV[i])
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

# -- rate limits ---------------------------------------------------------------------------------------------
# KEYS[1] is the scope's pause (an absolute server time in ms); the others hold one GCRA theoretical arrival
# time each (ms). See `_limits.SmoothLimit` for the arithmetic, which is the same.

_RATE_PREAMBLE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function store(key, tat, now)
  redis.call('SET', key, string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)) + 60000)
end
"""

ACQUIRE = (
    _RATE_PREAMBLE
    + """
-- KEYS: pause, then one key per limit. ARGV: burst ms, then cost / per-minute pairs (one per limit key).
-- Books every limit's share for the earliest moment all allow it; returns the wait in ms.
local now = now_ms()
local go = math.max(now, tonumber(redis.call('GET', KEYS[1]) or 0) or 0)
local burst = tonumber(ARGV[1])
local tats, spans = {}, {}
for i = 2, #KEYS do
  local cost, per_minute = tonumber(ARGV[2 * i - 2]), tonumber(ARGV[2 * i - 1])
  local span = cost * 60000 / per_minute
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0) or 0
  tats[i], spans[i] = tat, span
  local allow = tat + span - math.max(burst, span)
  if allow > go then go = allow end
end
for i = 2, #KEYS do store(KEYS[i], math.max(tats[i], go) + spans[i], now) end
return string.format('%.3f', go - now)
"""
)

ADJUST = (
    _RATE_PREAMBLE
    + """
-- KEYS: one limit. ARGV: units (> 0: charge more, < 0: give back), per minute, burst ms.
local now = now_ms()
local units, per_minute, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0) or 0, now - burst)
store(KEYS[1], math.max(tat + units * 60000 / per_minute, now - burst), now)
return 1
"""
)

PAUSE = (
    _RATE_PREAMBLE
    + """
-- KEYS: pause. ARGV: ms. Extends, never shortens, a pause in force for every client of the scope.
local now = now_ms()
local until_ms = now + tonumber(ARGV[1])
if until_ms > (tonumber(redis.call('GET', KEYS[1]) or 0) or 0) then
  redis.call('SET', KEYS[1], string.format('%.3f', until_ms), 'PX', math.ceil(tonumber(ARGV[1])) + 1000)
end
return 1
"""
)

LEARNED = """
-- KEYS: the scope's learned limits (hash kind -> per minute). ARGV: kind / per-minute pairs to record.
-- Returns every learned limit. They expire after an hour unrenewed: an organisation's tier can change.
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if #ARGV > 0 then redis.call('PEXPIRE', KEYS[1], 3600000) end
return redis.call('HGETALL', KEYS[1])
"""
