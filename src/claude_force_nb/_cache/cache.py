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

Failures. A store that cannot be opened, fails or does not answer in `timeout_s` is "no cache" for the calls
(a miss, an unstored answer) with one warning: every store operation goes through `guard.py`'s `StoreGuard`.
A row whose bookkeeping was edited into nonsense is a corrupt row like a tampered value (`store.parse_row`).

`verify_integrity=False` still writes the MAC but skips checking it on reads: for a trusted local disk where
the ~2.5 us per 2 KB (more for long answers) matters. Malformed entries are still refused.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from .._config import (
    DEFAULT_CACHE_MAX_SIZE_MB,
    DEFAULT_CACHE_TTL_HOURS,
    Environment,
    mask_url,
    read_environment,
)
from .._exceptions import CacheUnavailableError, ConfigError
from .._request import Completion, MessageRequest
from .._validate import shorten
from .bundle import BundleEntry, read_bundle, write_bundle
from .entry import (
    CacheHit,
    CorruptEntryError,
    check_cacheable,
    decode_entry,
    decode_request,
    encode_entry,
    mac_ok,
)
from .guard import DEFAULT_CACHE_TIMEOUT_S, StoreGuard, describe_error
from .key import keyed_request, request_key
from .memory import MemorySlot, MemoryTier
from .policy import DEFAULT_REDIS_PREFIX, CacheSettings, is_expired
from .secret import resolve_secret
from .stats import CacheCounters, CacheStats, entries_frame, task_preview
from .store import (
    CorruptRow,
    LookupResult,
    PersistentStore,
    PutItem,
    StoredRow,
    Touch,
    WriteOutcome,
    entry_info,
)
from .touches import TouchBatch

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ResponseCache"]

T = TypeVar("T")

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
        timeout_s: float = DEFAULT_CACHE_TIMEOUT_S,
    ) -> None:
        """`timeout_s` bounds each lookup and store on the call path (see `guard.py`: a store that cannot be
        opened, fails or runs late means "no cache" with one warning, never a failed or blocked call)."""
        self.settings = CacheSettings.build(
            backend=backend,
            ttl_hours=ttl_hours,
            max_size_mb=max_size_mb,
            memory_max_size_mb=memory_max_size_mb,
            verify_integrity=verify_integrity,
        )
        self.backend = backend
        self.replay = replay
        if isinstance(exclude_agents, str):  # frozenset("fixer") would exclude agents "f", "i", "x"...
            raise ConfigError(f"exclude_agents must be a list of agent names, got {shorten(exclude_agents)}")
        self.exclude_agents = frozenset(exclude_agents)
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self._clock: Callable[[], float] = clock or time.time
        env = read_environment(environ)
        directory = Path(cache_dir).expanduser() if cache_dir is not None else env.cache_dir
        self.cache_dir: Path | None = directory if self.settings.kind == "disk" else None
        self.timeout_s = float(timeout_s)
        self._guard = _guard_for(self.settings.kind, backend, directory, redis_prefix, self.timeout_s)
        self._secret = b""
        self._store: PersistentStore | None = None
        try:
            self._secret = self._open_secret(secret, env, directory)
            if self.settings.kind == "disk":
                from .disk import DiskStore

                self._store = DiskStore(directory)
            elif self.settings.kind == "redis":
                from .redis import RedisStore

                self._store = RedisStore(backend, prefix=redis_prefix, timeout_s=float(timeout_s))
        except Exception as exc:  # a corrupt file, an unusable folder or secret: "no cache", said once
            self._guard.refuse_to_open(exc)
        memory_bytes = self.settings.memory_max_size_bytes
        self._memory = MemoryTier(memory_bytes) if memory_bytes > 0 and not self.off else None
        self._lock = threading.RLock()
        self._counters = CacheCounters()
        self._touches = TouchBatch()
        self._last_memory_sweep = time.monotonic()
        self._closed = False

    def _open_secret(self, secret: str | bytes | None, env: Environment, directory: Path) -> bytes:
        if self.settings.kind == "memory" and secret is None and not env.cache_secret:
            # Memory entries die with the process, so a per-process secret protects them as well as a stored
            # one would, without creating a file in the user's config dir for a throwaway cache.
            return secrets.token_bytes(32)
        return resolve_secret(
            secret,
            env_secret=env.cache_secret,
            config_dir=env.config_dir,
            cache_dir=directory if self.settings.kind == "disk" else None,
        )

    @property
    def off(self) -> bool:
        """True when the store could not be opened: nothing is served or stored (the warning said why)."""
        return self._guard.broken is not None

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
        store = self._store
        result = self._guard.run("a lookup", lambda: store.lookup(key)) if store is not None else None
        if result is None:  # no store, or it failed: a miss
            self._miss()
            return None
        hit, bad = self._judge(key, now, result)
        if bad is not None and store is not None:
            self._guard.run("removing a bad entry", lambda: store.discard(key, bad))
        return hit

    async def aget(self, request: MessageRequest, *, agent: str) -> CacheHit | None:
        """Async `get`: memory hits stay on the loop; see the module docstring for the persistent tiers."""
        if self.excludes(agent):
            return None
        key, now = request_key(request), self._clock()
        hit = self._memory_hit(key, now)
        if hit is not None:
            return hit
        store = self._store
        result: LookupResult | None = None
        if store is not None and store.reads_inline:
            result = self._guard.run("a lookup", lambda: store.lookup(key))
        elif store is not None:
            result = await self._guard.arun("a lookup", lambda: store.alookup(key))
        if result is None:  # no store, or it failed or ran late: a miss
            self._miss()
            return None
        hit, bad = self._judge(key, now, result)
        if bad is not None and store is not None:
            await self._guard.arun("removing a bad entry", lambda: store.adiscard(key, bad))
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
            if math.isnan(result.expires):  # an expiry column edited into something that is not a time
                log.warning(
                    "response cache: refusing entry %s from %s: its expiry is not a time",
                    key[:12],
                    self._where(),
                )
                self._counters.integrity_failures += 1
                self._counters.misses += 1
                return None, value
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
        return self._store.description if self._store is not None else self._guard.where

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
        outcome: WriteOutcome | None = WriteOutcome()
        store = self._store
        if store is not None:
            touches = self._take_touches()
            outcome = self._guard.run(
                "a store",
                lambda: store.put_many([item], now=now, cap=self.settings.max_size_bytes, touches=touches),
            )
        if outcome is not None:  # None: the store failed, so the answer is not cached (not even in memory)
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
        outcome: WriteOutcome | None = WriteOutcome()
        store = self._store
        if store is not None:
            touches = self._take_touches()
            outcome = await self._guard.arun(
                "a store",
                lambda: store.aput_many([item], now=now, cap=self.settings.max_size_bytes, touches=touches),
            )
        if outcome is not None:  # None: the store failed or ran late, so the answer is not cached
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
        if self.excludes(agent) or self.off:
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
            store = self._store
            if store is not None and not self._closed:  # a failure only makes LRU order a little less exact
                touches = self._take_touches()
                self._guard.run("recording hits", lambda: store.flush_touches(touches))
        finally:
            self._touches.flush_pending = False

    def _sync_persistent(self) -> None:
        """Flush hits and sweep expired entries, so counts and rows are exact right now."""
        store = self._store
        if store is not None:
            touches, now = self._take_touches(), self._clock()
            self._guard.run("recording hits", lambda: store.flush_touches(touches))
            expired = self._guard.run("a sweep", lambda: store.sweep(now)) or ()
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
        """Counters of this object plus the store's exact contents (expired entries swept first).

        While the store is off or failing, `entries`/`size_bytes` are the memory tier's (what can be served
        now) and `errors` says how many store operations failed."""
        self._sync_persistent()
        store = self._store
        usage = self._guard.run("reading its size", store.usage) if store is not None else None
        with self._lock:
            c = self._counters
            memory_entries = len(self._memory) if self._memory is not None else 0
            memory_bytes = self._memory.size_bytes if self._memory is not None else 0
            if store is None:
                entries, size = memory_entries, memory_bytes
                cap = self.settings.memory_max_size_bytes if not self.off else self.settings.max_size_bytes
            else:
                entries, size = usage if usage is not None else (memory_entries, memory_bytes)
                cap = self.settings.max_size_bytes
            return CacheStats(
                backend=mask_url(self.backend),
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
                errors=self._guard.errors,
            )

    def _rows(self) -> list[StoredRow]:
        """The authoritative tier's rows, least recently used first, after a sync."""
        self._sync_persistent()
        store = self._store
        rows = self._guard.run("listing entries", store.rows) if store is not None else None
        if rows is not None:
            return self._refuse_corrupt(rows)
        with self._lock:  # no store, or it failed: what the memory tier holds (nothing when the cache is off)
            return self._memory.rows() if self._memory is not None else []

    def _refuse_corrupt(self, rows: Iterable[StoredRow | CorruptRow]) -> list[StoredRow]:
        """The sound rows; each corrupt one (hand-edited bookkeeping) is logged, counted and removed."""
        sound: list[StoredRow] = []
        for row in rows:
            if isinstance(row, StoredRow):
                sound.append(row)
                continue
            log.warning(
                "response cache: refusing entry %s from %s: %s", row.key[:12], self._where(), row.problem
            )
            with self._lock:
                self._counters.integrity_failures += 1
            self._discard_everywhere(row.key, row.value)
        return sound

    def entries_frame(self, *, tasks: bool = False) -> pd.DataFrame:
        """One row per entry, most recently used first: key (prefix), agent, model, bytes, created,
        last_access, hits, expires_in_s, from the store's bookkeeping alone: no stored value is read.

        `tasks=True` adds a `task` column (the start of each entry's task, after `agent`): that reads every
        value and decodes those whose signature checks out, so it costs what reading the whole cache costs.
        """
        if tasks:
            rows = sorted(self._rows(), key=lambda r: r.last_access, reverse=True)
            return entries_frame(
                [entry_info(r) for r in rows], now=self._clock(), tasks=[self._task_preview(r) for r in rows]
            )
        self._sync_persistent()
        store = self._store
        listed = self._guard.run("listing entries", store.entries) if store is not None else None
        if listed is not None:
            entries, corrupt = listed
            self._refuse_corrupt(corrupt)
            return entries_frame(entries, now=self._clock())
        with self._lock:  # no store, or it failed: what the memory tier holds (nothing when the cache is off)
            entries = self._memory.entries() if self._memory is not None else []
        return entries_frame(entries, now=self._clock())

    def _task_preview(self, row: StoredRow) -> str:
        # Only a value whose MAC checks out is decoded (the rule of entry.py); anything else says so.
        if not mac_ok(self._secret, row.key, row.value):
            return "(unverified entry)"
        try:
            return task_preview(decode_request(row.value))
        except CorruptEntryError:
            return "(undecodable entry)"

    def clear(self) -> int:
        """Remove every entry this cache stores (its own rows/keys only; other files are left alone).

        CacheUnavailableError when the store cannot be used (the same for `delete` and the bundles)."""
        self._check_usable("clearing")
        with self._lock:
            memory_entries = len(self._memory) if self._memory is not None else 0
            if self._memory is not None:
                self._memory.clear()
            self._touches.clear()
        store = self._store
        return self._explicit("clearing", store.clear) if store is not None else memory_entries

    def delete(self, key: str) -> bool:
        """Remove one entry by its key; True if it was there."""
        self._check_usable("deleting an entry")
        with self._lock:
            in_memory = self._memory is not None and self._memory.pop(key) is not None
            self._touches.discard(key)
        store = self._store
        in_store = (
            self._explicit("deleting an entry", lambda: store.delete(key)) if store is not None else False
        )
        return in_memory or in_store

    def _check_usable(self, what: str) -> None:
        if self._guard.broken is not None:
            raise CacheUnavailableError(
                f"response cache: {what} is not possible: {self._guard.where} cannot be used "
                f"({self._guard.broken}). {self._guard.fix}"
            )

    def _explicit(self, what: str, op: Callable[[], T]) -> T:
        """An operation asked for by name: its failure is a short CacheUnavailableError, not a miss."""
        try:
            return op()
        except Exception as exc:
            where, fix = self._guard.where, self._guard.fix
            raise CacheUnavailableError(
                f"response cache: {what} in {where} failed ({describe_error(exc)}). {fix}"
            ) from exc

    # -- replay bundles --------------------------------------------------------------------------------------

    def export_bundle(self, path: str | Path, *, agents: Iterable[str] | None = None) -> int:
        """Write the unexpired entries (of `agents`, or all) to a replay bundle; returns how many."""
        self._check_usable("exporting")
        wanted = None if agents is None else frozenset(agents)
        now = self._clock()
        entries: list[BundleEntry] = []
        store = self._store
        if store is not None:
            self._sync_persistent()
            rows = self._refuse_corrupt(self._explicit("exporting", store.rows))
        else:
            rows = self._rows()
        for row in rows:
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
        self._check_usable("importing")
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
        store = self._store
        if store is not None:
            touches = self._take_touches()
            outcome = self._explicit(
                "importing",
                lambda: store.put_many(
                    [item for item, _ in items], now=now, cap=self.settings.max_size_bytes, touches=touches
                ),
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
        store = self._store
        if store is not None:
            self._guard.run("removing a bad entry", lambda: store.discard(key, value))

    # -- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Record pending hits and release files/connections. Idempotent; never raises for a failing store
        (the hits are then lost, which only makes LRU order a little less exact)."""
        if self._closed:
            return
        self._closed = True
        store = self._store
        if store is not None:
            touches = self._take_touches()
            if touches:
                self._guard.run("recording hits", lambda: store.flush_touches(touches))
            try:
                store.close()
            except Exception:
                log.debug("response cache: closing %s failed", self._where(), exc_info=True)

    async def aclose(self) -> None:
        """Async `close` (closes the async Redis client on its own loop). Never raises for a failing store."""
        if self._closed:
            return
        self._closed = True
        store = self._store
        if store is not None:
            touches = self._take_touches()
            if touches:  # the sync flush may wait for another process's write lock: not on the loop
                loop = asyncio.get_running_loop()
                await self._guard.arun(
                    "recording hits", lambda: loop.run_in_executor(None, store.flush_touches, touches)
                )
            try:
                await store.aclose()
            except Exception:
                log.debug("response cache: closing %s failed", self._where(), exc_info=True)

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
            f"ResponseCache(backend={mask_url(self.backend)!r}, where={self._where()!r}, "
            f"ttl_hours={self.settings.ttl_s / 3600:g}, max_size_bytes={self.settings.max_size_bytes})"
        )


def _guard_for(kind: str, backend: str, directory: Path, prefix: str, timeout_s: float) -> StoreGuard:
    """The guard of a cache's persistent tier, knowing what to call the store and how to fix it."""
    if kind == "disk":
        from .disk import DB_FILE_NAME

        path = directory / DB_FILE_NAME
        fix = (
            f"To fix it, move {path.name} aside (e.g. rename it to {path.name}.broken; it holds only cached "
            "answers) or set cache_dir to another folder."
        )
        return StoreGuard(str(path), fix=fix, timeout_s=timeout_s)
    if kind == "redis":
        fix = "Check that this Redis server is running and reachable, or use cache_backend='disk'."
        return StoreGuard(f"{mask_url(backend)} (prefix {prefix!r})", fix=fix, timeout_s=timeout_s)
    return StoreGuard("memory", fix="", timeout_s=timeout_s)
