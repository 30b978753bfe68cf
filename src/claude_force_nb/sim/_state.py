"""SimState: everything the server remembers between requests, behind one lock (the batches have their own).

The server's event loop and the test's thread both touch this object (the test calls `script()`, `stats()`,
`reset()` while requests are in flight), so every method takes the lock, does a few dictionary operations and
releases it. Nothing slow (JSON, text generation, I/O, sleeping) ever happens while the lock is held.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ._batches import BatchBook
from ._cache import NO_CACHE, CachePlan, PromptCache
from ._config import SimConfig
from ._faults import Fault, FaultSchedule
from ._ratelimit import RateLimited, RateLimiter
from ._tokens import PromptTokens
from ._wire import Usage

__all__ = ["SimState"]

_COUNTERS = (
    "requests",
    "count_tokens",
    "streamed",
    "rate_limited",
    "count_tokens_limited",
    "disconnects",
    "cache_reads",
    "cache_writes",
    "cache_read_tokens",
    "cache_write_tokens",
    "input_tokens",
    "output_tokens",
    "in_flight",
    "peak_in_flight",
    "batch_calls",
    "batch_items",
    "batch_input_tokens",
    "batch_cache_read_tokens",
    "batch_cache_write_tokens",
    "batch_output_tokens",
)


class SimState:
    """Stats, recorded requests, fault schedule, prompt cache and rate limits of one simulator."""

    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock  # rate limits and the prompt cache's TTLs read it (injectable for tests)
        self._lock = threading.Lock()
        self._schedule = FaultSchedule(config.fault_rates, config.seed)
        self._cache = PromptCache(ttl_5m_s=config.cache_ttl_5m_s, ttl_1h_s=config.cache_ttl_1h_s)
        self._limiter = RateLimiter(
            rpm=config.requests_per_minute,
            itpm=config.input_tokens_per_minute,
            otpm=config.output_tokens_per_minute,
            now=self._clock(),
            burst_s=config.rate_limit_burst_s,
        )
        # count_tokens has its own requests-per-minute limit, separate from the Messages API's.
        self._count_limiter = RateLimiter(
            rpm=config.count_tokens_per_minute,
            itpm=None,
            otpm=None,
            now=self._clock(),
            burst_s=config.rate_limit_burst_s,
        )
        self._records: deque[dict[str, Any]] = deque(maxlen=config.record_limit)
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._by_status: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        self.batches = BatchBook(config)

    # -- the server's side ---------------------------------------------------------------------------------

    def arrive(self, record: dict[str, Any], body: bytes, *, is_messages: bool) -> Fault | None:
        """Count and record a request; for /v1/messages also pick its fault (scripted first, then random)."""
        with self._lock:
            self._records.append(record)
            if not is_messages:
                self._counts["count_tokens"] += 1
                return None
            counts = self._counts
            counts["requests"] += 1
            counts["in_flight"] += 1
            if counts["in_flight"] > counts["peak_in_flight"]:
                counts["peak_in_flight"] = counts["in_flight"]
            fault = self._schedule.next_fault(body)
            if fault is not None:
                self._faults[fault.kind] += 1
                record["fault"] = fault.kind
            return fault

    def admit(
        self, *, scope: str, model: str, prompt: PromptTokens
    ) -> tuple[CachePlan, RateLimited | None, dict[str, str]]:
        """Plan the prompt cache and apply rate limits; commit the cache only if the request is admitted.

        Returns the cache plan, the refusal (or None) and the anthropic-ratelimit-* headers to send.
        """
        now = self._clock()
        with self._lock:
            plan = NO_CACHE
            if prompt.breakpoints:
                min_tokens = self.config.min_cache_tokens_for(model)
                plan = self._cache.plan(
                    scope=scope, model=model, breakpoints=prompt.breakpoints, min_tokens=min_tokens, now=now
                )
            refused: RateLimited | None = None
            headers: dict[str, str] = {}
            if self._limiter.enabled:
                refused = self._limiter.admit(prompt.total - plan.read_tokens, now)
                headers = self._limiter.headers(now, time.time())
                if refused is not None:
                    self._counts["rate_limited"] += 1
                    return plan, refused, headers
            if plan.touches:
                self._cache.commit(plan, now)
            return plan, None, headers

    def batch_arrive(self, record: dict[str, Any], match_text: bytes) -> Fault | None:
        """Count and record a /v1/messages/batches call and pick its fault (matched on path + body)."""
        with self._lock:
            self._records.append(record)
            self._counts["batch_calls"] += 1
            fault = self._schedule.next_fault(match_text)
            if fault is not None:
                self._faults[fault.kind] += 1
                record["fault"] = fault.kind
            return fault

    def batch_finish(self, record: dict[str, Any], status: int) -> None:
        with self._lock:
            record["status"] = status
            self._by_status[status] += 1

    def batch_cache_plan(self, *, scope: str, model: str, prompt: PromptTokens) -> CachePlan:
        """Plan and commit a batch item's prompt-cache use in the batch path's own scope (no rate limits:
        batch items are not admitted one by one)."""
        if not prompt.breakpoints:
            return NO_CACHE
        now = self._clock()
        with self._lock:
            plan = self._cache.plan(
                scope=f"batch:{scope}",
                model=model,
                breakpoints=prompt.breakpoints,
                min_tokens=self.config.min_cache_tokens_for(model),
                now=now,
            )
            if plan.touches:
                self._cache.commit(plan, now)
            return plan

    def count_batch_usage(self, usage: Usage) -> None:
        with self._lock:
            counts = self._counts
            counts["batch_items"] += 1
            counts["batch_input_tokens"] += usage.input_tokens
            counts["batch_cache_read_tokens"] += usage.cache_read_tokens
            counts["batch_cache_write_tokens"] += usage.cache_write_tokens
            counts["batch_output_tokens"] += usage.output_tokens

    def admit_count(self) -> RateLimited | None:
        """Take one count_tokens request from its own limit, or refuse it (a 429)."""
        with self._lock:
            if not self._count_limiter.enabled:
                return None
            refused = self._count_limiter.admit(0, self._clock())
            if refused is not None:
                self._counts["count_tokens_limited"] += 1
            return refused

    def finish(
        self,
        record: dict[str, Any],
        status: int | None,
        *,
        is_messages: bool,
        usage: Usage | None = None,
        streamed: bool = False,
        disconnected: bool = False,
    ) -> None:
        """Record a request's outcome: status (None when no response was sent), usage and flags."""
        with self._lock:
            record["status"] = status
            if status is not None:
                self._by_status[status] += 1
            counts = self._counts
            if disconnected:
                counts["disconnects"] += 1
            if not is_messages:
                return
            counts["in_flight"] -= 1
            if streamed:
                counts["streamed"] += 1
            if usage is not None:
                counts["input_tokens"] += usage.input_tokens
                counts["output_tokens"] += usage.output_tokens
                if usage.cache_read_tokens:
                    counts["cache_reads"] += 1
                    counts["cache_read_tokens"] += usage.cache_read_tokens
                if usage.cache_write_tokens:
                    counts["cache_writes"] += 1
                    counts["cache_write_tokens"] += usage.cache_write_tokens
                if self._limiter.enabled:
                    self._limiter.charge_output(usage.output_tokens, self._clock())

    # -- the controller's side -----------------------------------------------------------------------------

    def script(self, fault: Fault, times: int = 1, match: str | None = None) -> None:
        with self._lock:
            self._schedule.script(fault, times, match)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["by_status"] = dict(sorted(self._by_status.items()))
            out["faults"] = dict(sorted(self._faults.items()))
            out["scripted_pending"] = self._schedule.pending
            out["cache_entries"] = len(self._cache)
            return out

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            # Records are updated in place when a request finishes; hand out copies that will not change.
            return [copy.copy(r) for r in self._records]

    def reset(self) -> None:
        """Forget everything: counters, records, scripts, the fault RNG, cache entries and rate windows."""
        with self._lock:
            in_flight = self._counts["in_flight"]
            self._counts = dict.fromkeys(_COUNTERS, 0)
            # Requests still running will decrement in_flight when they finish; keep the count honest.
            self._counts["in_flight"] = in_flight
            self._by_status.clear()
            self._faults.clear()
            self._records.clear()
            self._schedule.reset()
            self._cache.clear()
            self._limiter.reset(self._clock())
            self.batches = BatchBook(self.config)
            self._count_limiter.reset(self._clock())
