"""Rate limits as token buckets that refill continuously, enforced over short intervals as the API's are.

A limit of N per minute refills at N/60 per second into a bucket that holds only `burst_s` seconds' worth
(default 1 s, and at least one request): a 60 RPM limit acts as one request a second, so a client that
sends a whole minute's allowance at once is refused most of it, as it would be by the API. `burst_s=60`
gives the old full-minute bucket. The headers state the per-minute limit, and `remaining` as the same share
of it that the bucket has left. A request needs one request
token and its input tokens up front (cache reads are free, as in the real API). Output is unknown until the
answer is produced, so it is charged afterwards and may push the bucket below zero; the next request then
waits until it is positive again. A single request larger than the whole input bucket is admitted when the
bucket is full rather than never: that keeps a misconfigured test from locking up forever.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

__all__ = ["RateLimited", "RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    name: str
    capacity: float
    rate: float
    level: float
    updated: float
    limit: int

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def seconds_until(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate)


@dataclass(frozen=True, slots=True)
class RateLimited:
    """A refusal: which limit, and how long until the request would be admitted."""

    limit_name: str
    limit: int
    retry_after_s: float

    @property
    def message(self) -> str:
        return (
            f"This request would exceed the simulated rate limit of {self.limit} {self.limit_name} "
            "per minute. "
            "Slow down or wait for the retry-after time before retrying."
        )


def _rfc3339(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(wall)))


class RateLimiter:
    """Request, input-token and output-token buckets (each optional). Not thread-safe: the owner locks."""

    def __init__(
        self, *, rpm: int | None, itpm: int | None, otpm: int | None, now: float, burst_s: float = 1.0
    ) -> None:
        self._limits = {"requests": rpm, "input-tokens": itpm, "output-tokens": otpm}
        self._burst_s = burst_s
        self._buckets: dict[str, _Bucket] = {}
        self.reset(now)

    @property
    def enabled(self) -> bool:
        return bool(self._buckets)

    def reset(self, now: float) -> None:
        """Full buckets, as if the client had been idle for a while."""
        self._buckets = {}
        for name, limit in self._limits.items():
            if limit is not None:
                capacity = max(limit * self._burst_s / 60.0, 1.0)
                self._buckets[name] = _Bucket(
                    name=name, capacity=capacity, rate=limit / 60.0, level=capacity, updated=now, limit=limit
                )

    def admit(self, input_tokens: int, now: float) -> RateLimited | None:
        """Take one request and `input_tokens` from the buckets, or refuse (taking nothing)."""
        needs: list[tuple[_Bucket, float]] = []
        if (bucket := self._buckets.get("requests")) is not None:
            needs.append((bucket, 1.0))
        if (bucket := self._buckets.get("input-tokens")) is not None:
            needs.append((bucket, min(float(input_tokens), bucket.capacity)))
        if (bucket := self._buckets.get("output-tokens")) is not None:
            # Output is charged after the fact; any positive balance admits a request.
            needs.append((bucket, math.ulp(0.0)))
        worst: RateLimited | None = None
        for bucket, amount in needs:
            bucket.refill(now)
            if bucket.level < amount:
                wait = bucket.seconds_until(amount)
                if worst is None or wait > worst.retry_after_s:
                    label = bucket.name.replace("-", " ")
                    worst = RateLimited(limit_name=label, limit=bucket.limit, retry_after_s=wait)
        if worst is not None:
            return worst
        if (bucket := self._buckets.get("requests")) is not None:
            bucket.level -= 1.0
        if (bucket := self._buckets.get("input-tokens")) is not None:
            bucket.level -= input_tokens
        return None

    def charge_output(self, output_tokens: int, now: float) -> None:
        if (bucket := self._buckets.get("output-tokens")) is not None:
            bucket.refill(now)
            bucket.level -= output_tokens

    def headers(self, now: float, wall: float) -> dict[str, str]:
        """The anthropic-ratelimit-* headers for the configured limits (none when unlimited)."""
        out: dict[str, str] = {}
        token_buckets: list[_Bucket] = []
        for name, bucket in self._buckets.items():
            bucket.refill(now)
            self._put(out, name, bucket, wall)
            if name != "requests":
                token_buckets.append(bucket)
        if token_buckets:
            # anthropic-ratelimit-tokens-* reports whichever token limit is most restrictive right now.
            self._put(out, "tokens", min(token_buckets, key=lambda b: b.level / b.capacity * b.limit), wall)
        return out

    @staticmethod
    def _put(out: dict[str, str], name: str, bucket: _Bucket, wall: float) -> None:
        prefix = f"anthropic-ratelimit-{name}-"
        out[prefix + "limit"] = str(bucket.limit)
        out[prefix + "remaining"] = str(max(0, math.floor(bucket.level / bucket.capacity * bucket.limit)))
        out[prefix + "reset"] = _rfc3339(wall + bucket.seconds_until(bucket.capacity))
