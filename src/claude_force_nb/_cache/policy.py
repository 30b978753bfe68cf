"""The cache's settings and its decisions, as pure functions tested as tables.

Every tier asks the same questions (is this entry expired? which entries must go to make room?) and answers
them here, so memory, SQLite and Redis cannot drift apart. The Redis Lua script re-implements
`plan_eviction` server-side (it must, to be atomic); `tests/cache/test_tiers.py` runs the same LRU and cap
tests against the disk and Redis tiers to keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .._config import DEFAULT_CACHE_MAX_SIZE_MB, DEFAULT_CACHE_TTL_HOURS
from .._exceptions import ConfigError
from .._validate import check_bool, check_number, shorten

__all__ = [
    "DEFAULT_MEMORY_MAX_SIZE_MB",
    "DEFAULT_REDIS_PREFIX",
    "DEFAULT_TOUCH_FLUSH_INTERVAL_S",
    "BackendKind",
    "CacheSettings",
    "is_expired",
    "parse_backend",
    "plan_eviction",
]

DEFAULT_MEMORY_MAX_SIZE_MB = 256.0
"""The front tier's cap unless `memory_max_size_mb` says otherwise (and never above `max_size_mb`): a
notebook kernel should not grow by a gigabyte because the disk cache may."""
DEFAULT_REDIS_PREFIX = "cfnb:cache:"
DEFAULT_TOUCH_FLUSH_INTERVAL_S = 0.5
"""How stale another process's view of this process's hits may get (see `ResponseCache`, "LRU")."""

_MB = 1024 * 1024

BackendKind = Literal["memory", "disk", "redis"]


def parse_backend(backend: str) -> BackendKind:
    """'memory', 'disk', or a Redis URL (redis://, rediss://, unix://) -> its kind; ValueError otherwise."""
    if not isinstance(backend, str):
        raise ConfigError(f"cache backend must be 'memory', 'disk' or a redis:// URL, got {shorten(backend)}")
    if backend in ("memory", "disk"):
        return backend  # type: ignore[return-value]  # narrowed by the test above
    if backend.startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    raise ConfigError(f"cache backend must be 'memory', 'disk' or a redis:// URL, got {backend!r}")


def _positive(name: str, value: float, *, zero_ok: bool = False) -> float:
    return check_number(name, value, minimum=0.0) if zero_ok else check_number(name, value, above=0.0)


@dataclass(frozen=True, kw_only=True)
class CacheSettings:
    """Validated numbers behind a `ResponseCache` (byte caps are whole bytes, TTL is seconds)."""

    kind: BackendKind
    ttl_s: float
    max_size_bytes: int
    memory_max_size_bytes: int
    verify_integrity: bool = True

    @classmethod
    def build(
        cls,
        *,
        backend: str,
        ttl_hours: float = DEFAULT_CACHE_TTL_HOURS,
        max_size_mb: float = DEFAULT_CACHE_MAX_SIZE_MB,
        memory_max_size_mb: float | None = None,
        verify_integrity: bool = True,
    ) -> CacheSettings:
        kind = parse_backend(backend)
        check_bool("verify_integrity", verify_integrity)
        ttl_s = _positive("ttl_hours", ttl_hours) * 3600.0
        max_bytes = int(_positive("max_size_mb", max_size_mb) * _MB)
        if memory_max_size_mb is None:
            memory_bytes = min(max_bytes, int(DEFAULT_MEMORY_MAX_SIZE_MB * _MB))
        else:
            # 0 turns the front tier off (benchmarks, or several writers that must see each other at once).
            memory_bytes = min(
                max_bytes, int(_positive("memory_max_size_mb", memory_max_size_mb, zero_ok=True) * _MB)
            )
        if kind == "memory" and memory_bytes == 0:
            raise ValueError("backend='memory' needs memory_max_size_mb > 0")
        return cls(
            kind=kind,
            ttl_s=ttl_s,
            max_size_bytes=max_bytes,
            memory_max_size_bytes=memory_bytes,
            verify_integrity=verify_integrity,
        )


def is_expired(expires_at: float, now: float) -> bool:
    """An entry is served strictly before its expiry instant, never at or after it."""
    return now >= expires_at


def plan_eviction(lru_order: Iterable[tuple[str, int]], *, total: int, incoming: int, cap: int) -> list[str]:
    """Keys to evict, least recently used first, so that `total + incoming <= cap` afterwards.

    `lru_order` yields (key, size) oldest first and is consumed lazily (a SQL cursor stops early). `total`
    must already exclude any entry that the incoming one overwrites. Returns [] when nothing must go. If
    even evicting everything cannot make room, returns every key offered; callers refuse entries larger
    than the cap before getting here.
    """
    excess = total + incoming - cap
    victims: list[str] = []
    if excess <= 0:
        return victims
    for key, size in lru_order:
        victims.append(key)
        excess -= size
        if excess <= 0:
            break
    return victims
