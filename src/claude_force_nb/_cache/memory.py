"""The in-process tier: a byte-capped LRU dict of signed values, each with its decoded answer beside it.

Order is an `OrderedDict`: a hit moves the key to the end, eviction takes from the front, so eviction is by
last access (not hit count, not age). Sizes are the signed values' lengths, the same definition as the
persistent tiers, so one cap means the same thing everywhere.

Each slot keeps the decoded `CacheHit` next to its signed bytes. A hit still checks the MAC over the bytes (so
"nothing unverified is served" holds on every tier, at ~2.5 us for 2 KB), but skips re-parsing JSON and
rebuilding the `Completion`: `CacheHit` is frozen, so sharing one instance between hits is safe.

Expiry is swept incrementally: a min-heap of (expiry, key) lets `sweep` look only at entries that are due,
so `stats()` on a memory tier of 50,000 entries costs microseconds, not a scan of every slot. The heap may
hold stale pairs (an entry evicted or rewritten since); they are skipped when they surface, and the heap is
rebuilt when they outnumber the live entries.

Not thread-safe by itself: `ResponseCache` holds its lock around every call.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass

from .entry import CacheHit
from .policy import is_expired, plan_eviction
from .store import EntryInfo, StoredRow

__all__ = ["MemorySlot", "MemoryTier"]


@dataclass(slots=True, kw_only=True)
class MemorySlot:
    value: bytes
    hit: CacheHit
    model: str
    expires_at: float
    last_access: float
    hits: int = 0


class MemoryTier:
    """LRU by last access, capped at `max_bytes` of stored values, per-entry expiry."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._slots: OrderedDict[str, MemorySlot] = OrderedDict()
        self._expiry: list[tuple[float, str]] = []  # min-heap; may hold stale pairs (see the docstring)

    def __len__(self) -> int:
        return len(self._slots)

    def get(self, key: str) -> MemorySlot | None:
        """The slot, without counting an access (the caller verifies it, then calls `touch`)."""
        return self._slots.get(key)

    def touch(self, key: str, now: float) -> None:
        slot = self._slots[key]
        slot.last_access = now
        slot.hits += 1
        self._slots.move_to_end(key)

    def put(self, key: str, slot: MemorySlot) -> list[str]:
        """Store `slot`, evicting least recently used entries as needed; returns the evicted keys.

        A value larger than the whole cap is not stored (and evicts nothing).
        """
        size = len(slot.value)
        if size > self.max_bytes:
            self.pop(key)  # an older, smaller answer under the same key is now stale
            return []
        self.pop(key)
        victims = plan_eviction(
            ((k, len(s.value)) for k, s in self._slots.items()),
            total=self.size_bytes,
            incoming=size,
            cap=self.max_bytes,
        )
        for victim in victims:
            self.pop(victim)
        self._slots[key] = slot
        self.size_bytes += size
        heapq.heappush(self._expiry, (slot.expires_at, key))
        if len(self._expiry) > 2 * len(self._slots) + 64:
            self._expiry = [(s.expires_at, k) for k, s in self._slots.items()]
            heapq.heapify(self._expiry)
        return victims

    def pop(self, key: str) -> MemorySlot | None:
        slot = self._slots.pop(key, None)
        if slot is not None:
            self.size_bytes -= len(slot.value)
        return slot

    def sweep(self, now: float) -> list[str]:
        """Drop every expired slot; returns their keys. Looks only at the entries that are due."""
        gone: list[str] = []
        heap = self._expiry
        while heap and is_expired(heap[0][0], now):
            expires_at, key = heapq.heappop(heap)
            slot = self._slots.get(key)
            if slot is not None and slot.expires_at == expires_at:
                self.pop(key)
                gone.append(key)
        return gone

    def clear(self) -> None:
        self._slots.clear()
        self._expiry.clear()
        self.size_bytes = 0

    def entries(self) -> list[EntryInfo]:
        """Every slot's bookkeeping, most recently used first (the dict's order, reversed)."""
        return [
            (key, s.hit.agent, s.model, len(s.value), s.hit.created_at, s.last_access, s.expires_at, s.hits)
            for key, s in reversed(self._slots.items())
        ]

    def rows(self) -> list[StoredRow]:
        """The slots as store rows (for reports and bundles), least recently used first."""
        return [
            StoredRow(
                key=key,
                value=slot.value,
                agent=slot.hit.agent,
                model=slot.model,
                created=slot.hit.created_at,
                last_access=slot.last_access,
                expires=slot.expires_at,
                hits=slot.hits,
            )
            for key, slot in self._slots.items()
        ]
