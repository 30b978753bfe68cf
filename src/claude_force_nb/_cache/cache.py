"""`ResponseCache`: a memory tier in front of a persistent tier (SQLite on disk, or Redis), signed entries.

A lookup computes the key (`key.py`), asks the memory tier, then the persistent tier; an entry is served only
if it is unexpired and its MAC verifies. A disk or Redis hit is copied into the memory tier with the same
expiry. Anything expired, tampered, truncated or foreign is counted (expiration or integrity failure), removed
(only if it still holds the value we judged, so a fresh rewrite by another process survives) and reported as
a miss.

LRU. Hits are recorded where they happen (memory order at once; the persistent tier's `last_access`/`hits`
in a small in-process batch) because writing a row per memory hit would cost more than the hit itself. The
batch is written inside this process's next write transaction, before its eviction decision, so this
process always evicts by its true LRU order; otherwise it is flushed in the background once it is older than
`DEFAULT_TOUCH_FLUSH_INTERVAL_S`, which bounds how stale another process's view of our hits can be.

Threads and loops. Memory hits never leave the calling thread (no executor hop on the event loop). Disk reads
run inline and disk writes on the store's own single thread (see `disk.py` for the measurement); Redis uses
`redis.asyncio` in the async methods. One lock guards the memory tier, the counters and the touch batch, so
the sync twins may be called from any thread.

`verify_integrity=False` still writes the MAC but skips checking it on reads: for a trusted local disk where
the ~2.5 us per 2 KB (more for long answers) matters. Malformed entries are still refused.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .._config import DEFAULT_CACHE_MAX_SIZE_MB, DEFAULT_CACHE_TTL_HOURS, read_environment
from .._request import Completion, MessageRequest
from .bundle import BundleEntry, read_bundle, write_bundle
from .entry import (
    CacheHit,
    CorruptEntryError,
    check_cacheable,
    decode_entry,
    encode_entry,
    mac_ok,
)
from .key import keyed_request, request_key
from .memory import MemorySlot, MemoryTier
from .policy import DEFAULT_REDIS_PREFIX, CacheSettings, is_expired
from .secret import resolve_secret
from .stats import CacheCounters, CacheStats, entries_frame
from .store import LookupResult, PersistentStore, PutItem, StoredRow, Touch, WriteOutcome
from .touches import TouchBatch

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ResponseCache"]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_SWEEP_INTERVAL_S = 60.0
"""How often a memory-only cache scans for expired entries on write (stats() always does)."""


class ResponseCache:
    """Signed, size-capped, TTL'd cache of successful completions (see the module docstring)."""

    def __init__(
        self,
        backend: str = "disk",
        *,
        cache_dir: str | Path | None = None,
        ttl_hours: float = DEFAULT_CACHE_TTL_HOURS,
        max_size_mb: float = DEFAULT_CACHE_MAX_SIZE_MB,
        secret: str | bytes | None = None,
        exclude_agents: Iterable[str] = (),
        verify_integrity: bool = True,
        replay: bool = False,
        memory_max_size_mb: float | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        redis_prefix: str = DEFAULT_REDIS_PREFIX,
    ) -> None:
        self.settings = CacheSettings.build(
            backend=backend,
            ttl_hours=ttl_hours,
            max_size_mb=max_size_mb,
            memory_max_size_mb=memory_max_size_mb,
            verify_integrity=verify_integrity,
        )
        self.backend = backend
        self.replay = replay
        self.exclude_agents = frozenset(exclude_agents)
        self._clock: Callable[[], float] = clock or time.time
        env = read_environment(environ)
        directory = Path(cache_dir).expanduser() if cache_dir is not None else env.cache_dir
        if self.settings.kind == "memory" and secret is None and not env.cache_secret:
            # Memory entries die with the process, so a per-process secret protects them as well as a stored
            # one would, without creating a file in the user's config dir for a throwaway cache.
            self._secret = secrets.token_bytes(32)
        else:
            self._secret = resolve_secret(
                secret,
                env_secret=env.cache_secret,
                config_dir=env.config_dir,
                cache_dir=directory if self.settings.kind == "disk" else None,
            )
        self._store: PersistentStore | None = None
        if self.settings.kind == "disk":
            from .disk import DiskStore

            self._store = DiskStore(directory)
            self.cache_dir: Path | None = directory
        else:
            self.cache_dir = None
        if self.settings.kind == "redis":
            from .redis import RedisStore

            self._store = RedisStore(backend, prefix=redis_prefix)
        memory_bytes = self.settings.memory_max_size_bytes
        self._memory = MemoryTier(memory_bytes) if memory_bytes > 0 else None
        self._lock = threading.RLock()
        self._counters = CacheCounters()
        self._touches = TouchBatch()
        self._last_memory_sweep = time.monotonic()
        self._closed = False

    # -- keys and policy -------------------------------------------------------------------------------------

    def key(self, request: MessageRequest) -> str:
        """The hex SHA-256 cache key of `request` (see `claude_force_nb._cache.key`)."""
        return request_key(request)

    def excludes(self, agent: str) -> bool:
        """True for agents whose answers are never cached (`exclude_agents`)."""
        return agent in self.exclude_agents

    # -- lookups ---------------------------------------------------------------------------------------------

    def get(self, request: MessageRequest, *, agent: str) -> CacheHit | None:
        """The cached answer for `request`, or None (counted as a miss). Excluded agents: None, uncounted."""
        if self.excludes(agent):
            return None
        key, now = request_key(request), self._clock()
        hit = self._memory_hit(key, now)
        if hit is not None:
            return hit
        if self._store is None:
            self._miss()
            return None
        hit, bad = self._judge(key, now, self._store.lookup(key))
        if bad is not None:
            self._store.discard(key, bad)
        return hit

    async def aget(self, request: MessageRequest, *, agent: str) -> CacheHit | None:
        """Async `get`: memory hits stay on the loop; see the module docstring for the persistent tiers."""
        if self.excludes(agent):
            return None
        key, now = request_key(request), self._clock()
        hit = self._memory_hit(key, now)
        if hit is not None:
            return hit
        if self._store is None:
            self._miss()
            return None
        hit, bad = self._judge(key, now, await self._store.alookup(key))
        if bad is not None:
            await self._store.adiscard(key, bad)
        return hit

    def count_coalesced_hit(self, cost_usd: float, latency_s: float) -> None:
        """Count as a hit a call answered by an identical call in flight (the orchestrator coalesces them),
        with what it saved."""
        with self._lock:
            self._counters.record_hit(cost_usd, latency_s)

    def _miss(self) -> None:
        with self._lock:
            self._counters.misses += 1

    def _memory_hit(self, key: str, now: float) -> CacheHit | None:
        memory = self._memory
        if memory is None:
            return None
        with self._lock:
            slot = memory.get(key)
            if slot is None:
                return None
            if is_expired(slot.expires_at, now):
                memory.pop(key)
                if self._store is None:  # otherwise the persistent tier finds it expired and counts it
                    self._counters.expirations += 1
                return None
            if self.settings.verify_integrity and not mac_ok(self._secret, key, slot.value):
                memory.pop(key)
                self._counters.integrity_failures += 1
                return None
            memory.touch(key, now)
            hit = slot.hit
            self._counters.record_hit(hit.cost_usd, hit.latency_s)
            self._note_touch(key, now)
            return hit

    def _judge(self, key: str, now: float, result: LookupResult) -> tuple[CacheHit | None, bytes | None]:
        """Decide a persistent row: (hit, None), or (None, value to discard), or (None, None) for absent."""
        value = result.value
        with self._lock:
            self._counters.expirations += result.expired
            if value is None:
                self._counters.misses += 1
                return None, None
            if is_expired(result.expires, now):
                self._counters.expirations += 1
                self._counters.misses += 1
                return None, value
        try:
            decoded = decode_entry(self._secret, key, value, verify=self.settings.verify_integrity)
        except CorruptEntryError as exc:
            log.warning("response cache: refusing entry %s from %s: %s", key[:12], self._where(), exc)
            with self._lock:
                self._counters.integrity_failures += 1
                self._counters.misses += 1
            return None, value
        with self._lock:
            if is_expired(decoded.expires_at, now):  # the signed expiry wins over an edited column
                self._counters.expirations += 1
                self._counters.misses += 1
                return None, value
            hit = decoded.hit
            self._counters.record_hit(hit.cost_usd, hit.latency_s)
            self._note_touch(key, now)
            if self._memory is not None:
                slot = MemorySlot(
                    value=value,
                    hit=hit,
                    model=decoded.model,
                    expires_at=min(result.expires, decoded.expires_at),
                    last_access=now,
                )
                self._memory.put(key, slot)
        return hit, None

    def _where(self) -> str:
        return self._store.description if self._store is not None else "memory"

    # -- writes ----------------------------------------------------------------------------------------------

    def put(
        self,
        request: MessageRequest,
        completion: Completion,
        *,
        agent: str,
        cost_usd: float,
        latency_s: float,
    ) -> None:
        """Store a successful completion (ValueError for anything else). Excluded agents: ignored."""
        prepared = self._prepare(request, completion, agent=agent, cost_usd=cost_usd, latency_s=latency_s)
        if prepared is None:
            return
        item, slot, now = prepared
        outcome = WriteOutcome()
        if self._store is not None:
            outcome = self._store.put_many(
                [item], now=now, cap=self.settings.max_size_bytes, touches=self._take_touches()
            )
        self._after_write(item.key, slot, outcome, now)

    async def aput(
        self,
        request: MessageRequest,
        completion: Completion,
        *,
        agent: str,
        cost_usd: float,
        latency_s: float,
    ) -> None:
        """Async `put`: signing happens on the loop (~20 us); the disk write on the store's thread."""
        prepared = self._prepare(request, completion, agent=agent, cost_usd=cost_usd, latency_s=latency_s)
        if prepared is None:
            return
        item, slot, now = prepared
        outcome = WriteOutcome()
        if self._store is not None:
            outcome = await self._store.aput_many(
                [item], now=now, cap=self.settings.max_size_bytes, touches=self._take_touches()
            )
        self._after_write(item.key, slot, outcome, now)

    def _prepare(
        self,
        request: MessageRequest,
        completion: Completion,
        *,
        agent: str,
        cost_usd: float,
        latency_s: float,
    ) -> tuple[PutItem, MemorySlot, float] | None:
        if self.excludes(agent):
            return None
        check_cacheable(completion, cost_usd, latency_s)
        key, request_json = keyed_request(request)
        now = self._clock()
        expires = now + self.settings.ttl_s
        value = encode_entry(
            self._secret,
            key,
            completion=completion,
            agent=agent,
            model=request.model,
            created_at=now,
            expires_at=expires,
            cost_usd=float(cost_usd),
            latency_s=float(latency_s),
            request_json=request_json,
        )
        if len(value) > self.settings.max_size_bytes:
            log.info(
                "response cache: entry %s (%d bytes) is larger than the cap; not stored", key[:12], len(value)
            )
            return None
        hit = CacheHit(
            key=key,
            completion=Completion.from_dict(completion.to_dict()),  # exactly what a later disk hit would see
            cost_usd=float(cost_usd),
            latency_s=float(latency_s),
            created_at=now,
            agent=agent,
        )
        item = PutItem(key=key, value=value, agent=agent, model=request.model, created=now, expires=expires)
        return (
            item,
            MemorySlot(value=value, hit=hit, model=request.model, expires_at=expires, last_access=now),
            now,
        )

    def _after_write(self, key: str, slot: MemorySlot | None, outcome: WriteOutcome, now: float) -> None:
        with self._lock:
            self._counters.evictions += len(outcome.evicted)
            self._counters.expirations += len(outcome.expired)
            memory = self._memory
            if memory is None:
                return
            for gone in (*outcome.evicted, *outcome.expired):
                memory.pop(gone)
            if (
                self._store is None
                and time.monotonic() - self._last_memory_sweep >= DEFAULT_MEMORY_SWEEP_INTERVAL_S
            ):
                self._sweep_memory(now)
            if slot is not None:
                evicted = memory.put(key, slot)
                if self._store is None:
                    self._counters.evictions += len(evicted)

    def _sweep_memory(self, now: float) -> None:
        assert self._memory is not None
        gone = self._memory.sweep(now)
        if self._store is None:
            self._counters.expirations += len(gone)
        self._last_memory_sweep = time.monotonic()

    # -- the touch batch (see "LRU" in the module docstring) -----------------------------------------------

    def _note_touch(self, key: str, now: float) -> None:
        if self._store is not None and self._touches.note(key, now):
            self._store.executor.submit(self._background_flush)

    def _take_touches(self) -> dict[str, Touch]:
        with self._lock:
            return self._touches.take()

    def _background_flush(self) -> None:
        try:
            if self._store is not None and not self._closed:
                self._store.flush_touches(self._take_touches())
        except Exception:  # LRU order degrades a little; nothing is served wrong
            log.warning("response cache: could not record hits in %s", self._where(), exc_info=True)
        finally:
            self._touches.flush_pending = False

    def _sync_persistent(self) -> None:
        """Flush hits and sweep expired entries, so counts and rows are exact right now."""
        if self._store is not None:
            self._store.flush_touches(self._take_touches())
            expired = self._store.sweep(self._clock())
            with self._lock:
                self._counters.expirations += len(expired)
                if self._memory is not None:
                    for key in expired:
                        self._memory.pop(key)
        if self._memory is not None:
            with self._lock:
                self._sweep_memory(self._clock())

    # -- maintenance and reporting ---------------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Counters of this object plus the store's exact contents (expired entries swept first)."""
        self._sync_persistent()
        with self._lock:
            c = self._counters
            memory_entries = len(self._memory) if self._memory is not None else 0
            memory_bytes = self._memory.size_bytes if self._memory is not None else 0
            if self._store is None:
                entries, size = memory_entries, memory_bytes
                cap = self.settings.memory_max_size_bytes
            else:
                entries, size = self._store.usage()
                cap = self.settings.max_size_bytes
            return CacheStats(
                backend=self.backend,
                hits=c.hits,
                misses=c.misses,
                hit_rate=c.hit_rate(),
                entries=entries,
                size_bytes=size,
                max_size_bytes=cap,
                evictions=c.evictions,
                expirations=c.expirations,
                integrity_failures=c.integrity_failures,
                cost_saved_usd=c.cost_saved_usd,
                time_saved_s=c.time_saved_s,
                memory_entries=memory_entries,
                memory_size_bytes=memory_bytes,
            )

    def _rows(self) -> list[StoredRow]:
        """The authoritative tier's rows, least recently used first, after a sync."""
        self._sync_persistent()
        if self._store is not None:
            return self._store.rows()
        assert self._memory is not None
        with self._lock:
            return self._memory.rows()

    def entries_frame(self) -> pd.DataFrame:
        """One row per entry: key (prefix), agent, model, bytes, created, last_access, hits, expires_in_s."""
        return entries_frame(self._rows(), now=self._clock())

    def clear(self) -> int:
        """Remove every entry this cache stores (its own rows/keys only; other files are left alone)."""
        with self._lock:
            memory_entries = len(self._memory) if self._memory is not None else 0
            if self._memory is not None:
                self._memory.clear()
            self._touches.clear()
        return self._store.clear() if self._store is not None else memory_entries

    def delete(self, key: str) -> bool:
        """Remove one entry by its key; True if it was there."""
        with self._lock:
            in_memory = self._memory is not None and self._memory.pop(key) is not None
            self._touches.discard(key)
        in_store = self._store.delete(key) if self._store is not None else False
        return in_memory or in_store

    # -- replay bundles --------------------------------------------------------------------------------------

    def export_bundle(self, path: str | Path, *, agents: Iterable[str] | None = None) -> int:
        """Write the unexpired entries (of `agents`, or all) to a replay bundle; returns how many."""
        wanted = None if agents is None else frozenset(agents)
        now = self._clock()
        entries: list[BundleEntry] = []
        for row in self._rows():
            if is_expired(row.expires, now) or (wanted is not None and row.agent not in wanted):
                continue
            try:
                entries.append(BundleEntry.from_stored(self._secret, row.key, row.value))
            except CorruptEntryError as exc:
                log.warning("response cache: not exporting entry %s: %s", row.key[:12], exc)
                with self._lock:
                    self._counters.integrity_failures += 1
                self._discard_everywhere(row.key, row.value)
        return write_bundle(Path(path), entries)

    def import_bundle(self, path: str | Path) -> int:
        """Check a whole bundle (BundleError naming the bad entry; nothing imported), then store it.

        Entries are re-signed with this cache's secret and get a fresh TTL; returns how many were stored.
        """
        entries = read_bundle(Path(path))
        now = self._clock()
        expires = now + self.settings.ttl_s
        items: list[tuple[PutItem, MemorySlot]] = []
        for entry in entries:
            value = entry.sign(self._secret, expires_at=expires)
            if len(value) > self.settings.max_size_bytes:
                continue
            model = str(entry.request["model"])
            item = PutItem(
                key=entry.key,
                value=value,
                agent=entry.agent,
                model=model,
                created=entry.created,
                expires=expires,
            )
            slot = MemorySlot(value=value, hit=entry.hit(), model=model, expires_at=expires, last_access=now)
            items.append((item, slot))
        if self._store is not None:
            outcome = self._store.put_many(
                [item for item, _ in items],
                now=now,
                cap=self.settings.max_size_bytes,
                touches=self._take_touches(),
            )
            with self._lock:
                for item, _ in items:  # a stale memory copy must not shadow the imported one
                    if self._memory is not None:
                        self._memory.pop(item.key)
            self._after_write("", None, outcome, now)
        else:
            for item, slot in items:
                self._after_write(item.key, slot, WriteOutcome(), now)
        return len(items)

    def _discard_everywhere(self, key: str, value: bytes) -> None:
        with self._lock:
            if self._memory is not None:
                slot = self._memory.get(key)
                if slot is not None and slot.value == value:
                    self._memory.pop(key)
        if self._store is not None:
            self._store.discard(key, value)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Record pending hits and release files/connections. Idempotent."""
        if self._closed:
            return
        if self._store is not None:
            try:
                self._store.flush_touches(self._take_touches())
            finally:
                self._closed = True
                self._store.close()
        self._closed = True

    async def aclose(self) -> None:
        """Async `close` (closes the async Redis client on its own loop)."""
        if self._closed:
            return
        if self._store is not None:
            try:
                touches = self._take_touches()
                if touches:  # the sync flush may wait for another process's write lock: not on the loop
                    await asyncio.get_running_loop().run_in_executor(None, self._store.flush_touches, touches)
            finally:
                self._closed = True
                await self._store.aclose()
        self._closed = True

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> ResponseCache:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"ResponseCache(backend={self.backend!r}, where={self._where()!r}, "
            f"ttl_hours={self.settings.ttl_s / 3600:g}, max_size_bytes={self.settings.max_size_bytes})"
        )
