"""backend='memory': the memory tier alone, with the same LRU, TTL and byte rules."""

from __future__ import annotations

from _cache_support import FakeClock, make_completion, make_request

from claude_force_nb._cache import ResponseCache

KB = 1024 / (1024 * 1024)


def _put(cache: ResponseCache, task: str, text: str = "m" * 1500) -> None:
    cache.put(make_request(task), make_completion(text), agent="a", cost_usd=0.01, latency_s=1.0)


def test_memory_lru_ttl_and_bytes(clock: FakeClock) -> None:
    """LRU by last access, expiry counted as expiration, bytes equal to the stored values."""
    cache = ResponseCache("memory", secret="s", clock=clock, ttl_hours=1, max_size_mb=7 * KB)
    for name in "abc":
        _put(cache, name)
        clock.advance(1)
    assert cache.get(make_request("a"), agent="a") is not None
    _put(cache, "d")
    present = {n for n in "abcd" if cache.get(make_request(n), agent="a") is not None}
    assert present == {"a", "c", "d"}
    stats = cache.stats()
    assert stats.evictions == 1
    assert stats.size_bytes == stats.memory_size_bytes
    assert stats.size_bytes <= stats.max_size_bytes
    clock.advance(3600)
    assert cache.get(make_request("a"), agent="a") is None
    stats = cache.stats()
    assert (stats.entries, stats.size_bytes) == (0, 0)
    assert stats.expirations == 3
    assert stats.evictions == 1


def test_memory_backend_cap_defaults_to_front_tier_cap() -> None:
    """A memory-only cache is capped at min(max_size_mb, 256 MB) unless memory_max_size_mb says otherwise."""
    assert ResponseCache("memory", secret="s").stats().max_size_bytes == 256 * 1024 * 1024
    small = ResponseCache("memory", secret="s", max_size_mb=1000, memory_max_size_mb=2)
    assert small.stats().max_size_bytes == 2 * 1024 * 1024


async def test_memory_async_and_delete() -> None:
    """aget/aput work without any persistent tier; delete() reports whether the key was there."""
    cache = ResponseCache("memory", secret="s")
    await cache.aput(make_request(), make_completion(), agent="a", cost_usd=0.3, latency_s=1.0)
    hit = await cache.aget(make_request(), agent="a")
    assert hit is not None
    assert cache.delete(hit.key) is True
    assert cache.delete(hit.key) is False
    assert await cache.aget(make_request(), agent="a") is None
    await cache.aclose()


def test_replay_flag_is_settable() -> None:
    """replay is a plain settable flag (the orchestrator turns a miss into CacheMiss when it is on)."""
    cache = ResponseCache("memory", secret="s", replay=True)
    assert cache.replay is True
    cache.replay = False
    assert cache.replay is False


def test_memory_sweep_follows_rewrites(clock: FakeClock) -> None:
    """stats() drops exactly the expired entries; one rewritten with a later expiry outlives its first."""
    cache = ResponseCache("memory", secret="s", clock=clock, ttl_hours=1)
    _put(cache, "old")
    _put(cache, "rewritten")
    clock.advance(1800)
    _put(cache, "rewritten")  # a fresh hour from now: the first expiry no longer applies
    _put(cache, "young")
    clock.advance(1800)
    stats = cache.stats()
    assert (stats.entries, stats.expirations) == (2, 1)
    assert stats.size_bytes == sum(cache.entries_frame()["bytes"])
    assert cache.get(make_request("rewritten"), agent="a") is not None
    clock.advance(1800)
    assert (cache.stats().entries, cache.stats().expirations) == (0, 3)
