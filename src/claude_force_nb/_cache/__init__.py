"""The response cache: signed, size-capped, TTL'd answers in memory, on disk (SQLite) or in Redis.

`ResponseCache` is the one entry point; `request_key` is the pure key function it uses. See `cache.py` for
how the tiers fit together, `key.py` for what makes two requests "the same", `entry.py` for the stored
form, `disk.py` and `redis.py` for the persistent tiers, and `bundle.py` for replay bundles.
"""

from __future__ import annotations

from .bundle import MAX_BUNDLE_BYTES, MAX_BUNDLE_ENTRIES, MAX_BUNDLE_ENTRY_BYTES
from .cache import ResponseCache
from .entry import CacheHit
from .key import KEY_FORMAT_VERSION, request_key
from .policy import DEFAULT_MEMORY_MAX_SIZE_MB, DEFAULT_REDIS_PREFIX
from .stats import CacheStats

__all__ = [
    "DEFAULT_MEMORY_MAX_SIZE_MB",
    "DEFAULT_REDIS_PREFIX",
    "KEY_FORMAT_VERSION",
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_ENTRIES",
    "MAX_BUNDLE_ENTRY_BYTES",
    "CacheHit",
    "CacheStats",
    "ResponseCache",
    "request_key",
]
