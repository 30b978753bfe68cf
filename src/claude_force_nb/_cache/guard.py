"""A broken cache never breaks a call: every persistent-tier operation on the call path runs through here.

(The decision is "A broken cache is no cache" in docs/architecture.md.)

The README promises that the cache only ever saves calls. So a store that cannot be opened (a corrupt
`responses.sqlite3`, an unusable `cache_dir`), that fails (Redis gone, disk full) or that does not answer
(Redis frozen) turns into "no cache", never into an error or a wait:

- *A deadline on every lookup and store* (`timeout_s`, default `DEFAULT_CACHE_TIMEOUT_S`). A lookup past it
  counts as a miss, a store as skipped. (A disk lookup reads inline on the loop in microseconds, and nothing
  could interrupt it: it has no deadline, and does not pay for one. Disk writes run on a thread: they do.)
- *One warning*, naming the store, what went wrong and how to fix it; later failures only go to the debug log.
- *A pause.* After a failure the store is left alone for `DEFAULT_CACHE_RETRY_AFTER_S`, so a dead Redis costs
  one deadline per pause, not two per call; answers already in the memory tier are still served.
- *A store that could not be opened stays off* for the life of the cache object (a corrupt file does not
  mend itself); fix it and build a new cache (in a notebook: change a cache setting, or restart).

The guard catches `Exception`: whatever a store raises (sqlite3, OSError, redis-py, a closed connection),
the call goes on. Errors in the cache's own logic before or after the store (signing, checking that an
answer may be cached) are not the store's and are not caught here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._config import DEFAULT_CACHE_TIMEOUT_S

__all__ = ["DEFAULT_CACHE_RETRY_AFTER_S", "DEFAULT_CACHE_TIMEOUT_S", "StoreGuard", "describe_error"]

DEFAULT_CACHE_RETRY_AFTER_S = 30.0
"""How long a failed store is left alone before it is tried again."""

log = logging.getLogger("claude_force_nb.cache")
T = TypeVar("T")


class StoreGuard:
    """Deadline, one warning and a pause for one cache's persistent tier (see the module docstring)."""

    def __init__(
        self,
        where: str,
        *,
        fix: str,
        timeout_s: float = DEFAULT_CACHE_TIMEOUT_S,
        retry_after_s: float = DEFAULT_CACHE_RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.fix = fix
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.errors = 0
        """Store operations that failed or ran out of time (counted as misses or skipped stores)."""
        self.broken: str | None = None
        """Why the store could not be opened (it stays off), or None."""
        self._clock = clock
        self._resume_at = -math.inf
        self._warned = False

    @property
    def available(self) -> bool:
        """Whether to use the store now (opened, and not pausing after a failure)."""
        return self.broken is None and self._clock() >= self._resume_at

    def refuse_to_open(self, exc: BaseException) -> None:
        """The store could not be opened: the cache runs without it, and says so once."""
        self.broken = describe_error(exc)
        self.errors += 1
        self._warn(
            f"response cache off: {self.where} cannot be used ({self.broken}). "
            f"Calls go on without it. {self.fix}"
        )

    def failed(self, what: str, exc: BaseException) -> None:
        """Count a failed or timed-out operation, pause the store, warn the first time."""
        self.errors += 1
        self._resume_at = self._clock() + self.retry_after_s
        late = isinstance(exc, (TimeoutError, asyncio.TimeoutError))  # distinct classes before Python 3.11
        reason = f"no answer within {self.timeout_s:g} s" if late else describe_error(exc)
        self._warn(
            f"response cache: {what} in {self.where} failed ({reason}); calls go on without the cache, "
            f"which is tried again every {self.retry_after_s:g} s. {self.fix}"
        )

    def run(self, what: str, op: Callable[[], T]) -> T | None:
        """`op()` (a sync store call), or None when the store is off or the call failed."""
        if not self.available:
            return None
        try:
            return op()
        except Exception as exc:
            self.failed(what, exc)
            return None

    async def arun(self, what: str, op: Callable[[], Awaitable[T]]) -> T | None:
        """`await op()` within the deadline, or None when the store is off, the call failed or ran late."""
        if not self.available:
            return None
        try:
            if sys.version_info >= (3, 11):
                # A deadline on the running task: no extra task per operation, as wait_for would create
                # (~25 us each on the dev box, on the path of every cached call).
                async with asyncio.timeout(self.timeout_s):
                    return await op()
            return await asyncio.wait_for(op(), self.timeout_s)
        except Exception as exc:  # TimeoutError included
            self.failed(what, exc)
            return None

    def _warn(self, message: str) -> None:
        if self._warned:
            log.debug(message)
            return
        self._warned = True
        log.warning(message)


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
