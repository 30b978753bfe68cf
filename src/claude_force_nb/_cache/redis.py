"""The Redis tier: one cache shared by several kernels and machines.

Layout, all under one prefix P (default `cfnb:cache:`), so `clear()` can never touch anyone else's keys:

| key | type | holds |
|---|---|---|
| `P e:<key>` | hash | `v` (the signed value), agent, model, created, expires, hits; PEXPIRE = the TTL |
| `P lru` | sorted set | key -> last access (unix s): eviction order |
| `P exp` | sorted set | key -> expiry (unix s): what a sweep removes |
| `P size` | hash | key -> len(value): what to subtract when an entry goes, even after the server expired it |
| `P bytes` | string | the sum of `P size`: the byte count the cap is checked against |

Every change goes through a Lua script, and a script runs atomically on the server, so the sorted sets, the
size hash and the byte count change together or not at all, whichever client (or process, or machine) runs
it. A write sweeps expired entries, then evicts from the front of `P lru` until the new value fits, then
writes: the cap holds after every write. The server's own TTL (PX) reclaims memory even when no client
sweeps; a lookup that finds an entry gone but still indexed releases its bytes and counts an expiration.

Times are the clients' clocks (as the disk tier uses them), passed into the scripts: the clock stays
injectable for tests, and NTP-level skew between machines only shifts LRU order and expiry by milliseconds.
The cap bounds the values' bytes, not Redis's own memory overhead. Single-node Redis only: the scripts touch
entry keys they compute, which Redis Cluster does not allow.

Sync methods use `redis.Redis`; async ones use `redis.asyncio.Redis` on the running loop (never a thread).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import redis
import redis.asyncio

from .._config import mask_url
from .store import (
    CorruptRow,
    EntryInfo,
    LookupResult,
    PutItem,
    StoredRow,
    Touch,
    WriteOutcome,
    bookkeeping_time,
    entry_info,
    parse_row,
)

__all__ = ["RedisStore"]

_FIELDS = ("v", "agent", "model", "created", "expires", "hits")
_INFO_FIELDS = ("agent", "model", "created", "expires", "hits")

# Hand edits must not wedge the scripts (a script that errors half way keeps its earlier writes): a byte count
# that is not an integer is rebuilt from the sizes, an entry whose size is not one is removed with the count
# rebuilt, and a `hits` field that is not an integer is left for the reader to refuse (see `_stored_row`).
_PREAMBLE = """
local LRU, EXP, SIZE, BYTES = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local P = ARGV[1]
local function int(x)
  if x and string.match(x, '^%-?%d+$') then return tonumber(x) end
  return nil
end
local function rebuild_bytes()
  local t = 0
  for _, s in ipairs(redis.call('HVALS', SIZE)) do t = t + (int(s) or 0) end
  redis.call('SET', BYTES, t)
  return t
end
local function byte_total()
  local t = redis.call('GET', BYTES)
  if not t then return 0 end
  return int(t) or rebuild_bytes()
end
local function remove(k)
  local s = redis.call('HGET', SIZE, k)
  if s then
    byte_total()
    redis.call('HDEL', SIZE, k)
    if int(s) then redis.call('DECRBY', BYTES, s) else rebuild_bytes() end
  end
  redis.call('ZREM', LRU, k)
  redis.call('ZREM', EXP, k)
  return redis.call('DEL', P .. 'e:' .. k)
end
local function sweep(now)
  local gone = redis.call('ZRANGEBYSCORE', EXP, '-inf', now)
  for _, k in ipairs(gone) do remove(k) end
  return gone
end
"""

# ARGV: prefix, now, cap, n_touches, (key, at, count)*, n_items, (key, value, agent, model, created, expires,
# ttl_ms)*. Pending hits first (so this client's eviction sees its own LRU order), then the sweep, then items.
_PUT = (
    _PREAMBLE
    + """
local now, cap = ARGV[2], tonumber(ARGV[3])
local i = 4
local ntouch = tonumber(ARGV[i]); i = i + 1
for _ = 1, ntouch do
  local k, at, n = ARGV[i], ARGV[i + 1], ARGV[i + 2]; i = i + 3
  if redis.call('EXISTS', P .. 'e:' .. k) == 1 then
    local cur = redis.call('ZSCORE', LRU, k)
    if (not cur) or tonumber(at) > tonumber(cur) then redis.call('ZADD', LRU, at, k) end
    local e = P .. 'e:' .. k
    if int(redis.call('HGET', e, 'hits')) then redis.call('HINCRBY', e, 'hits', n) end
  end
end
local expired = {}
if now ~= '-inf' then expired = sweep(now) end
local evicted = {}
local nitems = tonumber(ARGV[i]); i = i + 1
for _ = 1, nitems do
  local k, v, agent, model = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local created, expires, ttl_ms = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  i = i + 7
  local size = string.len(v)
  if size <= cap then
    remove(k)
    local total = byte_total()
    while total + size > cap do
      local oldest = redis.call('ZRANGE', LRU, 0, 0)
      if #oldest == 0 then break end
      local s = tonumber(redis.call('HGET', SIZE, oldest[1]) or '0')
      remove(oldest[1])
      evicted[#evicted + 1] = oldest[1]
      total = total - s
    end
    local e = P .. 'e:' .. k
    redis.call('HSET', e, 'v', v, 'agent', agent, 'model', model, 'created', created, 'expires', expires,
               'hits', 0)
    redis.call('PEXPIRE', e, ttl_ms)
    redis.call('HSET', SIZE, k, size)
    redis.call('INCRBY', BYTES, size)
    redis.call('ZADD', LRU, now, k)
    redis.call('ZADD', EXP, expires, k)
  end
end
return {evicted, expired}
"""
)

# ARGV: prefix, key. Returns {1, value, expires} | {0} (gone on the server: bytes released) | {-1} (absent).
_GET = (
    _PREAMBLE
    + """
local k = ARGV[2]
local vals = redis.call('HMGET', P .. 'e:' .. k, 'v', 'expires')
if not vals[1] then
  if redis.call('HEXISTS', SIZE, k) == 1 then remove(k) return {0} end
  return {-1}
end
return {1, vals[1], vals[2]}
"""
)

# ARGV: prefix, key, value ('' = any value). Removes only the value the caller judged (or a vanished entry).
_DISCARD = (
    _PREAMBLE
    + """
local k, v = ARGV[2], ARGV[3]
local cur = redis.call('HGET', P .. 'e:' .. k, 'v')
if (cur and (v == '' or cur == v)) or ((not cur) and redis.call('HEXISTS', SIZE, k) == 1) then
  remove(k)
  return 1
end
return 0
"""
)

_SWEEP = _PREAMBLE + "\nreturn sweep(ARGV[2])\n"

_USAGE = _PREAMBLE + "\nreturn {redis.call('HLEN', SIZE), byte_total()}\n"

_CLEAR = (
    _PREAMBLE
    + """
local n = 0
for _, k in ipairs(redis.call('HKEYS', SIZE)) do remove(k); n = n + 1 end
for _, k in ipairs(redis.call('ZRANGE', LRU, 0, -1)) do remove(k) end
redis.call('DEL', BYTES)
return n
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _put_args(
    prefix: str, items: Sequence[PutItem], now: str, cap: int, touches: Mapping[str, Touch]
) -> list[Any]:
    args: list[Any] = [prefix, now, cap, len(touches)]
    for key, (at, count) in touches.items():
        args += [key, repr(at), count]
    args.append(len(items))
    for item in items:
        ttl_ms = max(1, math.ceil((item.expires - float(now)) * 1000)) if now != "-inf" else 1
        args += [item.key, item.value, item.agent, item.model, repr(item.created), repr(item.expires), ttl_ms]
    return args


def _outcome(reply: Any) -> WriteOutcome:
    evicted, expired = reply
    return WriteOutcome(evicted=tuple(map(_text, evicted)), expired=tuple(map(_text, expired)))


def _lookup(reply: Any) -> LookupResult:
    status = int(reply[0])
    if status <= 0:
        return LookupResult(None, expired=1 if status == 0 else 0)
    return LookupResult(bytes(reply[1]), bookkeeping_time(reply[2]))  # NaN if edited: the cache refuses it


def _stored_row(key: str, fields: list[Any], last_access: Any) -> StoredRow | CorruptRow:
    value, agent, model, created, expires, hits = fields
    last = last_access if last_access is not None else 0.0  # an LRU index gap is not the row's fault
    return parse_row(key, value, agent, model, created, last, expires, hits)


class RedisStore:
    """A Redis-backed persistent store (see the module docstring)."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float | None = None) -> None:
        """`timeout_s` bounds connecting and each reply, for the sync client here and the async one too."""
        self.url = url
        self.prefix = prefix
        self.reads_inline = False
        self.description = f"{mask_url(url)} (prefix {prefix!r})"  # a password in the URL is never shown
        self._keys = [prefix + name for name in ("lru", "exp", "size", "bytes")]
        self._timeouts: dict[str, Any] = {}
        if timeout_s:
            self._timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        self._client = redis.Redis.from_url(url, **self._timeouts)
        self._scripts = {name: self._client.register_script(src) for name, src in _SCRIPTS.items()}
        self._aclient: redis.asyncio.Redis | None = None
        self._ascripts: dict[str, Any] = {}
        self._executor: ThreadPoolExecutor | None = None

    def _run(self, name: str, args: list[Any]) -> Any:
        return self._scripts[name](keys=self._keys, args=args)

    async def _arun(self, name: str, args: list[Any]) -> Any:
        if self._aclient is None:
            self._aclient = redis.asyncio.Redis.from_url(self.url, **self._timeouts)
            self._ascripts = {n: self._aclient.register_script(src) for n, src in _SCRIPTS.items()}
        return await self._ascripts[name](keys=self._keys, args=args)

    @property
    def executor(self) -> Executor:
        """A single thread for background touch flushes (the sync client is thread-safe)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cfnb-cache-redis")
        return self._executor

    def lookup(self, key: str) -> LookupResult:
        return _lookup(self._run("get", [self.prefix, key]))

    async def alookup(self, key: str) -> LookupResult:
        return _lookup(await self._arun("get", [self.prefix, key]))

    def put_many(
        self, items: Sequence[PutItem], *, now: float, cap: int, touches: Mapping[str, Touch]
    ) -> WriteOutcome:
        return _outcome(self._run("put", _put_args(self.prefix, items, repr(now), cap, touches)))

    async def aput_many(
        self, items: Sequence[PutItem], *, now: float, cap: int, touches: Mapping[str, Touch]
    ) -> WriteOutcome:
        return _outcome(await self._arun("put", _put_args(self.prefix, items, repr(now), cap, touches)))

    def discard(self, key: str, value: bytes) -> bool:
        return bool(self._run("discard", [self.prefix, key, value]))

    async def adiscard(self, key: str, value: bytes) -> bool:
        return bool(await self._arun("discard", [self.prefix, key, value]))

    def delete(self, key: str) -> bool:
        return bool(self._run("discard", [self.prefix, key, b""]))

    def flush_touches(self, touches: Mapping[str, Touch]) -> None:
        if touches:
            self._run("put", _put_args(self.prefix, (), "-inf", 0, touches))

    def sweep(self, now: float) -> tuple[str, ...]:
        return tuple(map(_text, self._run("sweep", [self.prefix, repr(now)])))

    def usage(self) -> tuple[int, int]:
        entries, size = self._run("usage", [self.prefix])
        return int(entries), int(size)

    def rows(self) -> list[StoredRow | CorruptRow]:
        keys = sorted(_text(k) for k in self._client.hkeys(self._keys[2]))
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self.prefix + "e:" + key, list(_FIELDS))
            pipe.zscore(self._keys[0], key)
        replies = pipe.execute()
        rows: list[StoredRow | CorruptRow] = []
        for i, key in enumerate(keys):
            fields, last_access = replies[2 * i], replies[2 * i + 1]
            if fields[0] is not None:
                rows.append(_stored_row(key, fields, last_access))
        return rows

    def entries(self) -> tuple[list[EntryInfo], list[CorruptRow]]:
        # Sizes come from the size hash and last access from the LRU set (one reply each); the per-entry
        # fields are HMGETs without the value, pipelined, judged by `parse_row` as `rows()` judges them. Only
        # an entry that fails is read whole (its value is what a refusal must match to remove it).
        sizes = self._client.hgetall(self._keys[2])
        scored: list[tuple[Any, float]] = self._client.zrange(self._keys[0], 0, -1, withscores=True)  # type: ignore[assignment]
        lru = {_text(k): score for k, score in scored}
        keys = sorted((_text(k) for k in sizes), key=lambda k: (lru.get(k, 0.0), k), reverse=True)
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self.prefix + "e:" + key, list(_INFO_FIELDS))
        listed: list[EntryInfo] = []
        corrupt: list[CorruptRow] = []
        for key, fields in zip(keys, pipe.execute(), strict=True):
            if all(field is None for field in fields):
                continue  # gone on the server (its TTL), not yet released by a client
            agent, model, created, expires, hits = fields
            size = sizes.get(key.encode())
            row = parse_row(key, b"", agent, model, created, lru.get(key, 0.0), expires, hits)
            if isinstance(row, StoredRow) and size is not None and size.isdigit():
                listed.append(
                    (
                        key,
                        row.agent,
                        row.model,
                        int(size),
                        row.created,
                        row.last_access,
                        row.expires,
                        row.hits,
                    )
                )
                continue
            whole = self._client.hmget(self.prefix + "e:" + key, list(_FIELDS))
            if whole[0] is not None:
                judged = _stored_row(key, whole, lru.get(key))
                if isinstance(judged, StoredRow):
                    listed.append(entry_info(judged))
                else:
                    corrupt.append(judged)
        return listed, corrupt

    def clear(self) -> int:
        return int(self._run("clear", [self.prefix]))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._client.close()
        # An async client can only be closed on its loop: use `aclose()` after async use.
        self._aclient = None

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
        await asyncio.get_running_loop().run_in_executor(None, self.close)


_SCRIPTS = {
    "put": _PUT,
    "get": _GET,
    "discard": _DISCARD,
    "sweep": _SWEEP,
    "clear": _CLEAR,
    "usage": _USAGE,
}
