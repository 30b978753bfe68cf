"""Prompt-cache emulation: which part of a prompt is read from cache, which part is written, and for how long.

As in the real API, each cache_control mark ends a cacheable prefix. A request reads the longest marked prefix
that is cached and unexpired (a read refreshes its TTL), and writes every longer marked prefix, so
`cache_creation_input_tokens` is what lies between the hit and the last mark. Prefixes below the model's
minimum are never cached and cost nothing extra: the real API ignores them silently, so does this.

Entries are keyed by (api key, model, prefix hash): two keys (two organisations) never share a cache.
Planning is separate from committing so the server can refuse a request (rate limit) without touching state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._tokens import Breakpoint

__all__ = ["CachePlan", "PromptCache"]

_SWEEP_EVERY = 4096

_Key = tuple[str, str, bytes]


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What one request does to the cache, and the usage numbers it reports."""

    read_tokens: int
    write_5m_tokens: int
    write_1h_tokens: int
    # Entries to (re)set on commit: (key, ttl label).
    touches: tuple[tuple[_Key, str], ...]

    @property
    def write_tokens(self) -> int:
        return self.write_5m_tokens + self.write_1h_tokens


NO_CACHE = CachePlan(read_tokens=0, write_5m_tokens=0, write_1h_tokens=0, touches=())


class PromptCache:
    """In-memory cache entries with expiry times. Not thread-safe: the owner holds a lock."""

    def __init__(self, *, ttl_5m_s: float, ttl_1h_s: float) -> None:
        self._ttl = {"5m": ttl_5m_s, "1h": ttl_1h_s}
        self._expires: dict[_Key, float] = {}
        self._commits = 0

    def __len__(self) -> int:
        return len(self._expires)

    def plan(
        self, *, scope: str, model: str, breakpoints: Sequence[Breakpoint], min_tokens: int, now: float
    ) -> CachePlan:
        """Decide reads and writes for a request's breakpoints (in prompt order) without changing anything."""
        eligible = [bp for bp in breakpoints if bp.tokens >= min_tokens]
        if not eligible:
            return NO_CACHE
        hit = -1
        for i in range(len(eligible) - 1, -1, -1):
            expires = self._expires.get((scope, model, eligible[i].digest))
            if expires is not None and expires > now:
                hit = i
                break
        read = eligible[hit].tokens if hit >= 0 else 0
        writes = {"5m": 0, "1h": 0}
        previous = read
        touches: list[tuple[_Key, str]] = []
        if hit >= 0:
            touches.append(((scope, model, eligible[hit].digest), eligible[hit].ttl))
        # Each segment between consecutive marks is billed at the TTL of the mark that ends it.
        for bp in eligible[hit + 1 :]:
            writes[bp.ttl] += bp.tokens - previous
            previous = bp.tokens
            touches.append(((scope, model, bp.digest), bp.ttl))
        return CachePlan(
            read_tokens=read,
            write_5m_tokens=writes["5m"],
            write_1h_tokens=writes["1h"],
            touches=tuple(touches),
        )

    def commit(self, plan: CachePlan, now: float) -> None:
        """Apply a plan: refresh the entry that was read and store the ones that were written."""
        for key, ttl in plan.touches:
            self._expires[key] = now + self._ttl[ttl]
        self._commits += 1
        if self._commits % _SWEEP_EVERY == 0:
            self._expires = {k: t for k, t in self._expires.items() if t > now}

    def clear(self) -> None:
        self._expires.clear()
