"""The batch of hits waiting to be written to the persistent tier (see "LRU" in `cache.py`).

A hit is recorded here at once (a dict update, no I/O) and reaches the store later, in bulk: inside this
process's next write transaction, or from a background flush once the batch is older than the interval.
Not thread-safe by itself: `ResponseCache` holds its lock around every call.
"""

from __future__ import annotations

import time

from .policy import DEFAULT_TOUCH_FLUSH_INTERVAL_S
from .store import Touch

__all__ = ["TouchBatch"]


class TouchBatch:
    """key -> (latest access time, hits since the last flush)."""

    def __init__(self, interval_s: float = DEFAULT_TOUCH_FLUSH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._touches: dict[str, Touch] = {}
        self._since: float | None = None
        self.flush_pending = False

    def note(self, key: str, now: float) -> bool:
        """Record one hit; True when the caller should schedule a background flush (now pending)."""
        at, count = self._touches.get(key, (now, 0))
        self._touches[key] = (max(at, now), count + 1)
        if self._since is None:
            self._since = time.monotonic()
            return False
        if self.flush_pending or time.monotonic() - self._since < self.interval_s:
            return False
        self.flush_pending = True
        return True

    def take(self) -> dict[str, Touch]:
        """Everything recorded so far, leaving the batch empty."""
        touches, self._touches, self._since = self._touches, {}, None
        return touches

    def discard(self, key: str) -> None:
        self._touches.pop(key, None)

    def clear(self) -> None:
        self.take()
