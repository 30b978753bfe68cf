"""The seam between `ResponseCache` and a persistent tier (SQLite on disk, or Redis).

A store moves opaque signed values and the bookkeeping around them; it never decodes or verifies them (the
cache does, with the secret) and never decides expiry on its own beyond "expires <= now" sweeps. Every
method that changes bytes keeps the store's byte count exact *in the same atomic step* as the change (one
SQLite transaction, one Redis script), so no crash or concurrent writer can leave the count wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "CorruptRow",
    "EntryInfo",
    "LookupResult",
    "PersistentStore",
    "PutItem",
    "StoredRow",
    "Touch",
    "WriteOutcome",
    "bookkeeping_time",
    "entry_info",
    "parse_row",
]

Touch = tuple[float, int]
"""(last access time, hits since the last flush) for one key: hits recorded in memory, written in batches."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRow:
    key: str
    value: bytes
    agent: str
    model: str
    created: float
    last_access: float
    expires: float
    hits: int


@dataclass(frozen=True, slots=True)
class CorruptRow:
    """A row whose bookkeeping (agent, model, times, hits) is not what the store writes: a hand edit, or
    damage. The cache refuses it, counts it as an integrity failure and removes it; it is never served."""

    key: str
    value: bytes
    problem: str


def bookkeeping_time(raw: object) -> float:
    """A stored time (created, last access, expiry) as a float; NaN when it is not a finite number."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        number = float(raw)
    elif isinstance(raw, (str, bytes)):
        try:
            number = float(raw)
        except ValueError:
            return math.nan
    else:
        return math.nan
    return number if math.isfinite(number) else math.nan


_INTEGER = re.compile(rb"-?[0-9]+")


def parse_row(
    key: str,
    value: object,
    agent: object,
    model: object,
    created: object,
    last_access: object,
    expires: object,
    hits: object,
    /,
) -> StoredRow | CorruptRow:
    """Check and convert one stored row's columns (as SQLite or Redis return them, in `StoredRow` order)."""
    data = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else b""
    texts: list[str] = []
    for name, raw in (("agent", agent), ("model", model)):
        try:
            texts.append(raw if isinstance(raw, str) else bytes(raw).decode())  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return CorruptRow(key, data, f"{name} is not text")
    times: list[float] = []
    for name, raw in (("created", created), ("last_access", last_access), ("expires", expires)):
        times.append(bookkeeping_time(raw))
        if math.isnan(times[-1]):
            return CorruptRow(key, data, f"{name} is not a time: {raw!r:.40}")
    if isinstance(hits, int) and not isinstance(hits, bool):
        count = hits
    elif isinstance(hits, (str, bytes)) and _INTEGER.fullmatch(
        hits.encode() if isinstance(hits, str) else hits
    ):
        count = int(hits)
    else:
        return CorruptRow(key, data, f"hits is not a whole number: {hits!r:.40}")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return CorruptRow(key, data, "the value is not bytes")
    return StoredRow(
        key=key,
        value=data,
        agent=texts[0],
        model=texts[1],
        created=times[0],
        last_access=times[1],
        expires=times[2],
        hits=count,
    )


EntryInfo = tuple[Any, ...]
"""One entry's bookkeeping without its value, for reports: (key, agent, model, bytes, created, last_access,
expires, hits), possibly followed by fields a store uses itself. A plain tuple (as the database driver
returns it) because a report of 50,000 entries holds 50,000 of them."""


def entry_info(row: StoredRow) -> EntryInfo:
    """A judged row's bookkeeping, its value's size included."""
    return (
        row.key,
        row.agent,
        row.model,
        len(row.value),
        row.created,
        row.last_access,
        row.expires,
        row.hits,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PutItem:
    key: str
    value: bytes
    agent: str
    model: str
    created: float
    expires: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOutcome:
    """What one atomic write did besides writing: keys evicted for space and keys swept as expired."""

    evicted: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A lookup: the stored value and its expiry if present (expired or not: the caller decides), and how
    many entries the server had already expired on its own (Redis), whose bytes the lookup released."""

    value: bytes | None
    expires: float = 0.0
    expired: int = 0


class PersistentStore(Protocol):
    """What `ResponseCache` needs from a persistent tier. Sync methods may block; async ones must not."""

    description: str
    reads_inline: bool
    """True when `alookup` reads synchronously on the loop (disk): no deadline can interrupt it, so the cache
    sets none and saves its cost on every hit; False when it awaits the network (Redis)."""

    @property
    def executor(self) -> Executor:
        """A single thread for this store's background work (touch flushes, offloaded writes)."""
        ...

    def lookup(self, key: str) -> LookupResult: ...
    async def alookup(self, key: str) -> LookupResult: ...
    def put_many(
        self, items: Sequence[PutItem], *, now: float, cap: int, touches: Mapping[str, Touch]
    ) -> WriteOutcome: ...
    async def aput_many(
        self, items: Sequence[PutItem], *, now: float, cap: int, touches: Mapping[str, Touch]
    ) -> WriteOutcome: ...
    def discard(self, key: str, value: bytes) -> bool:
        """Remove `key` only if it still holds exactly `value` (never a fresh rewrite by another process)."""
        ...

    async def adiscard(self, key: str, value: bytes) -> bool: ...
    def delete(self, key: str) -> bool: ...
    def flush_touches(self, touches: Mapping[str, Touch]) -> None: ...
    def sweep(self, now: float) -> tuple[str, ...]:
        """Remove every entry with expires <= now; return their keys."""
        ...

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) as the store's own exact counters say."""
        ...

    def rows(self) -> list[StoredRow | CorruptRow]: ...
    def entries(self) -> tuple[list[EntryInfo], list[CorruptRow]]:
        """Every entry's bookkeeping, most recently used first, computed without reading any value; and the
        rows whose bookkeeping is not what the store writes (only those are read whole, to be refused like
        `rows()` refuses them). An entry may carry further fields after the eight of `EntryInfo`."""
        ...

    def clear(self) -> int: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
