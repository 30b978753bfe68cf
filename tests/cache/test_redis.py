"""Redis-tier specifics: prefix ownership, server-side expiry, and shared use across instances."""

from __future__ import annotations

import time

import pytest
import redis
from _cache_support import FakeClock, make_completion, make_request

from claude_force_nb._cache import ResponseCache

pytestmark = pytest.mark.redis


def _put(cache: ResponseCache, task: str) -> None:
    cache.put(make_request(task), make_completion("r" * 500), agent="a", cost_usd=0.01, latency_s=1.0)


def test_clear_deletes_only_keys_under_its_prefix(redis_url: str, redis_prefix: str) -> None:
    """Other applications' keys, and another cache's prefix, survive clear()."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(redis_prefix + "-not-ours", b"keep")  # shares the prefix string but is not our layout
        client.set("someone-else:key", b"keep")
        other = ResponseCache(redis_url, secret="s", redis_prefix=redis_prefix + "other:")
        mine = ResponseCache(redis_url, secret="s", redis_prefix=redis_prefix)
        _put(other, "x")
        _put(mine, "x")
        _put(mine, "y")
        assert mine.clear() == 2
        assert client.get(redis_prefix + "-not-ours") == b"keep"
        assert client.get("someone-else:key") == b"keep"
        assert other.get(make_request("x"), agent="a") is not None
        assert [k for k in client.scan_iter(redis_prefix + "e:*")] == []
        other.clear()
        other.close()
        mine.close()
    finally:
        client.delete(redis_prefix + "-not-ours", "someone-else:key")
        client.close()


def test_server_side_expiry_releases_bytes(redis_url: str, redis_prefix: str) -> None:
    """When Redis itself expires an entry (PX), the next lookup releases its bytes and counts it."""
    cache = ResponseCache(
        redis_url, secret="s", redis_prefix=redis_prefix, ttl_hours=1.0 / 3600, memory_max_size_mb=0
    )
    try:
        _put(cache, "short")
        assert cache.stats().entries == 1  # a 1 s TTL leaves room for a slow machine between put and stats
        time.sleep(1.2)
        assert cache.get(make_request("short"), agent="a") is None
        stats = cache.stats()
        assert (stats.entries, stats.size_bytes, stats.expirations) == (0, 0, 1)
    finally:
        cache.close()


def test_entries_carry_a_server_ttl(redis_url: str, redis_prefix: str) -> None:
    """Each entry has a PX expiry, so the server reclaims memory even if no client ever sweeps."""
    cache = ResponseCache(redis_url, secret="s", redis_prefix=redis_prefix, ttl_hours=1)
    client = redis.Redis.from_url(redis_url)
    try:
        _put(cache, "ttl")
        (key,) = client.keys(redis_prefix + "e:*")
        assert 3_590_000 < client.pttl(key) <= 3_600_000
    finally:
        cache.clear()
        cache.close()
        client.close()


async def test_shared_by_two_async_instances(redis_url: str, redis_prefix: str, clock: FakeClock) -> None:
    """One instance writes through redis.asyncio, the other hits it, and accounting agrees for both."""
    writer = ResponseCache(redis_url, secret="s", redis_prefix=redis_prefix, clock=clock)
    reader = ResponseCache(redis_url, secret="s", redis_prefix=redis_prefix, clock=clock)
    try:
        await writer.aput(make_request(), make_completion("shared"), agent="a", cost_usd=0.2, latency_s=3.0)
        hit = await reader.aget(make_request(), agent="a")
        assert hit is not None
        assert (hit.completion.text, hit.cost_usd) == ("shared", 0.2)
        assert writer.stats().size_bytes == reader.stats().size_bytes > 0
    finally:
        await writer.aclose()
        await reader.aclose()


@pytest.mark.parametrize("edit", ["byte count", "one size", "hits"])
def test_hand_edited_counters_never_wedge_the_scripts(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture, edit: str
) -> None:
    """A byte count, a size or a hits field that is not an integer: the scripts never fail on it (a failing
    script would switch the cache off), the byte count is rebuilt exactly, and hits/close stay quiet."""
    client = redis.Redis.from_url(redis_url)
    cache = ResponseCache(redis_url, secret="s", redis_prefix=redis_prefix)
    try:
        _put(cache, "x")
        _put(cache, "y")
        key = cache.key(make_request("x"))
        if edit == "byte count":
            client.set(redis_prefix + "bytes", "abc")
        elif edit == "one size":
            client.hset(redis_prefix + "size", key, "abc")
        else:
            client.hset(redis_prefix + "e:" + key, "hits", "many")
        assert cache.get(make_request("x"), agent="a") is not None  # a hit: a touch to record
        _put(cache, "z")  # a write (records the touch, checks the cap)
        stats = cache.stats()
        sizes = [
            len(client.hget(redis_prefix + "e:" + k.decode(), "v") or b"")
            for k in client.hkeys(redis_prefix + "size")
        ]
        assert stats.size_bytes == sum(sizes) and stats.errors == 0
        assert cache.clear() == 3
        assert cache.stats().size_bytes == 0
    finally:
        cache.close()
        client.close()
    assert not [r for r in caplog.records if r.levelno >= 30 and "failed" in r.getMessage()]
