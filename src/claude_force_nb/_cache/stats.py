"""What the cache reports about itself: `CacheStats` (one snapshot) and the counters behind it.

Two kinds of numbers, deliberately:

- *Traffic* (hits, misses, evictions, expirations, integrity failures, savings) is what **this** cache object
  saw or did since it was built: the notebook's own story, which is what a user comparing runs wants.
- *Contents* (entries, size_bytes) is the persistent store's exact count, shared by every process using it.

A hit saves what the original call cost and took (`cost_saved_usd`, `time_saved_s`); it costs nothing itself.
Hits of unpriced models (cost NaN) add to `time_saved_s` and `hits` but not to `cost_saved_usd`, so one
unknown model does not turn the total into NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .store import EntryInfo

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CacheCounters", "CacheStats", "entries_frame", "task_preview"]

_FRAME_KEY_CHARS = 16


@dataclass(frozen=True, kw_only=True)
class CacheStats:
    """A snapshot of a `ResponseCache` (see the module docstring for which numbers are whose)."""

    backend: str
    hits: int
    misses: int
    hit_rate: float
    """hits / (hits + misses), 0..1; 0.0 before any lookup."""
    entries: int
    size_bytes: int
    max_size_bytes: int
    evictions: int
    """Entries removed to make room (the authoritative tier's LRU); expiry is counted apart."""
    expirations: int
    integrity_failures: int
    cost_saved_usd: float
    time_saved_s: float
    memory_entries: int
    memory_size_bytes: int
    errors: int = 0
    """Store operations that failed or ran past the cache's deadline (counted as misses or skipped stores)."""

    def __repr__(self) -> str:
        """The numbers as a person reads them (the attributes and `to_frame()` keep the exact values):
        a rate as a percentage, dollars to four significant figures, seconds to two decimals."""
        shown = []
        for name, value in asdict(self).items():
            if name == "hit_rate":
                text = f"{value:.1%}"
            elif name == "cost_saved_usd":
                text = "unpriced" if math.isnan(value) else f"${value:.4g}"
            elif name == "time_saved_s":
                text = f"{value:.2f} s"
            else:
                text = repr(value)
            shown.append(f"{name}={text}")
        return f"CacheStats({', '.join(shown)})"

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of these numbers (pandas is imported here, not at package import)."""
        import pandas as pd

        return pd.DataFrame([asdict(self)])


@dataclass(kw_only=True)
class CacheCounters:
    """The mutable traffic counters; `ResponseCache` updates them under its lock."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    integrity_failures: int = 0
    cost_saved_usd: float = 0.0
    time_saved_s: float = 0.0

    def record_hit(self, cost_usd: float, latency_s: float) -> None:
        self.hits += 1
        if not math.isnan(cost_usd):
            self.cost_saved_usd += cost_usd
        self.time_saved_s += latency_s

    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


TASK_PREVIEW_CHARS = 60


def task_preview(request: object) -> str:
    """The start of the last user turn of a stored semantic request, on one line (for tables)."""
    messages = request.get("messages") if isinstance(request, dict) else None
    turns = [m for m in messages or () if isinstance(m, dict) and m.get("role") == "user"]
    content = turns[-1].get("content") if turns else ""
    if isinstance(content, list):  # content blocks: their text parts
        content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    text = " ".join(str(content).split())
    for tag in ("<task>", "</task>"):  # the prompt's own wrapper says nothing about the task
        text = text.replace(tag, " ").strip()
    text = " ".join(text.split())
    return text if len(text) <= TASK_PREVIEW_CHARS else text[: TASK_PREVIEW_CHARS - 1] + "…"


def entries_frame(entries: list[EntryInfo], *, now: float, tasks: list[str] | None = None) -> pd.DataFrame:
    """One row per entry, in the order given (most recently accessed first): key (prefix), agent, task
    (when `tasks` is given, one per entry), model, bytes, created, last_access, hits, expires_in_s. Times are
    UTC timestamps; pandas is imported here.

    Built column-wise from the store's bookkeeping tuples (see `PersistentStore.entries`): no value is read.
    """
    import numpy as np
    import pandas as pd

    # strict=False: a store's entries may carry extra trailing fields (see `EntryInfo`); the first 8 count.
    columns = list(zip(*entries, strict=False)) if entries else [()] * 8
    keys, agents, models, sizes, created, last_access, expires, hits = columns[:8]
    task_column = {"task": tasks} if tasks is not None else {}
    return pd.DataFrame(
        {
            "key": [k[:_FRAME_KEY_CHARS] for k in keys],
            "agent": list(agents),
            **task_column,
            "model": list(models),
            "bytes": np.array(sizes, dtype="int64"),
            "created": pd.to_datetime(np.array(created, dtype="float64"), unit="s", utc=True),
            "last_access": pd.to_datetime(np.array(last_access, dtype="float64"), unit="s", utc=True),
            "hits": np.array(hits, dtype="int64"),
            "expires_in_s": np.array(expires, dtype="float64") - now,
        }
    )
