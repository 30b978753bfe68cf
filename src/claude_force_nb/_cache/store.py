"""The seam between `ResponseCache` and a persistent tier (SQLite on disk, or Redis).

A store moves opaque signed values and the bookkeeping around them; it never decodes or verifies them (the
cache does, with the secret) and never decides expiry on its own beyond "expires <= now" sweeps. Every
method that changes bytes keeps the store's byte count exact *in the same atomic step* as the change (one
SQLite transaction, one Redis script), so no crash or concurrent writer can leave the count wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LookupResult", "PersistentStore", "PutItem", "StoredRow", "Touch", "WriteOutcome"]

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

    def rows(self) -> list[StoredRow]: ...
    def clear(self) -> int: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
