"""Behaviour every persistent tier must share (disk and Redis): hits, integrity, TTL, bytes, LRU, the cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _cache_support import FakeClock, StoreProbe, make_completion, make_request

from claude_force_nb._cache import ResponseCache
from claude_force_nb._cache.entry import decode_entry

KB = 1024 / (1024 * 1024)  # one KiB in the MB units of max_size_mb
TEXT = "x" * 1500  # ~2 KB stored values


def _put(cache: ResponseCache, task: str, *, text: str = TEXT, cost: float = 0.02) -> str:
    cache.put(make_request(task), make_completion(text), agent="analyst", cost_usd=cost, latency_s=2.0)
    return cache.key(make_request(task))


def _assert_bytes_exact(cache: ResponseCache, probe: StoreProbe) -> None:
    values = probe.values()
    stats = cache.stats()
    assert stats.size_bytes == sum(len(v) for v in values.values())
    assert stats.entries == len(values)


def test_hit_after_miss(open_cache: Any) -> None:
    """A miss, then a put, then a hit carrying the original cost and latency as the saving."""
    cache = open_cache()
    assert cache.get(make_request(), agent="analyst") is None
    _put(cache, "Summarise the report.", cost=0.5)
    hit = cache.get(make_request(), agent="analyst")
    assert hit is not None
    assert hit.completion.text == TEXT
    assert (hit.cost_usd, hit.latency_s, hit.agent) == (0.5, 2.0, "analyst")
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.hit_rate) == (1, 1, 0.5)
    assert (stats.cost_saved_usd, stats.time_saved_s) == (0.5, 2.0)


def test_second_instance_hits_what_the_first_wrote(open_cache: Any) -> None:
    """Two caches on one store (two kernels): one writes, the other hits from the persistent tier."""
    writer, reader = open_cache(), open_cache()
    _put(writer, "shared")
    hit = reader.get(make_request("shared"), agent="analyst")
    assert hit is not None
    assert hit.completion.text == TEXT
    assert reader.stats().memory_entries == 1  # promoted into the reader's memory tier


@pytest.mark.parametrize(
    ("what", "damage"),
    [
        ("tampered", lambda v: v[:-10] + b"X" + v[-9:]),
        ("truncated", lambda v: v[: len(v) - 100]),
        ("garbage", lambda v: b"\x00" * 10),
    ],
)
def test_damaged_entry_is_refused_counted_and_removed(
    open_cache: Any, probe: StoreProbe, what: str, damage: Any
) -> None:
    """An edited stored value is never served: integrity failure, miss, removed, bytes still exact."""
    writer = open_cache()
    key = _put(writer, "victim")
    _put(writer, "bystander")
    probe.set_value(key, damage(probe.values()[key]))
    reader = open_cache()  # a fresh instance: nothing in its memory tier
    assert reader.get(make_request("victim"), agent="analyst") is None, what
    stats = reader.stats()
    assert (stats.integrity_failures, stats.misses, stats.hits) == (1, 1, 0)
    assert key not in probe.values()
    _assert_bytes_exact(reader, probe)
    assert reader.get(make_request("bystander"), agent="analyst") is not None


def test_foreign_secret_is_refused(open_cache: Any, probe: StoreProbe) -> None:
    """Entries written under another secret fail verification in this cache."""
    _put(open_cache(secret="theirs"), "foreign")
    mine = open_cache(secret="mine")
    assert mine.get(make_request("foreign"), agent="analyst") is None
    assert mine.stats().integrity_failures == 1
    assert probe.values() == {}


def test_ttl_expiry_counts_and_releases_bytes(open_cache: Any, probe: StoreProbe, clock: FakeClock) -> None:
    """An expired entry is not served, counts as an expiration (not an eviction) and frees its bytes."""
    cache = open_cache(ttl_hours=1)
    _put(cache, "old")
    clock.advance(1800)
    _put(cache, "young")
    clock.advance(1800)  # "old" is exactly at its expiry now
    assert cache.get(make_request("old"), agent="analyst") is None
    assert cache.get(make_request("young"), agent="analyst") is not None
    stats = cache.stats()
    assert (stats.expirations, stats.evictions, stats.entries) == (1, 0, 1)
    _assert_bytes_exact(cache, probe)
    clock.advance(3600)
    stats = cache.stats()  # never looked up again: stats() sweeps it
    assert (stats.expirations, stats.entries, stats.size_bytes) == (2, 0, 0)


def test_expired_entry_in_memory_tier_is_not_served(open_cache: Any, clock: FakeClock) -> None:
    """The memory tier honours the same expiry as the store."""
    cache = open_cache(ttl_hours=1)
    _put(cache, "t")
    assert cache.get(make_request("t"), agent="analyst") is not None
    clock.advance(3600)
    assert cache.get(make_request("t"), agent="analyst") is None
    assert cache.stats().expirations == 1


def test_byte_accounting_exact_through_overwrite_expiry_corruption_delete(
    open_cache: Any, probe: StoreProbe, clock: FakeClock
) -> None:
    """size_bytes equals the sum of the stored values' lengths, read back after every kind of change."""
    cache = open_cache(ttl_hours=1)
    keys = [_put(cache, f"task {i}", text="y" * (500 * (i + 1))) for i in range(4)]
    _assert_bytes_exact(cache, probe)
    _put(cache, "task 0", text="z" * 3000)  # overwrite with a bigger value
    _put(cache, "task 1", text="z")  # and with a smaller one
    _assert_bytes_exact(cache, probe)
    probe.set_value(keys[2], probe.values()[keys[2]][:-1])  # corruption, then detected by a fresh reader
    assert open_cache().get(make_request("task 2"), agent="analyst") is None
    _assert_bytes_exact(cache, probe)
    assert cache.delete(keys[3]) is True
    assert cache.delete(keys[3]) is False
    _assert_bytes_exact(cache, probe)
    clock.advance(3601)  # expiry
    _put(cache, "after")
    _assert_bytes_exact(cache, probe)
    assert cache.stats().entries == 1


def test_lru_evicts_least_recently_accessed(open_cache: Any, probe: StoreProbe, clock: FakeClock) -> None:
    """Access an old entry, add one more than fits: the least recently used one goes, not the oldest."""
    sizer = open_cache()
    first = _put(sizer, "a")
    one = len(probe.values()[first])  # every entry below has this size (same-length tasks)
    sizer.clear()
    cache = open_cache(max_size_mb=3.5 * one * KB / 1024)
    for name in ("a", "b", "c"):
        _put(cache, name)
        clock.advance(1)
    assert cache.get(make_request("a"), agent="analyst") is not None  # a is now the most recent
    clock.advance(1)
    _put(cache, "d")
    fresh = open_cache()  # look through the store, not this instance's memory tier
    present = {name for name in "abcd" if fresh.get(make_request(name), agent="analyst") is not None}
    assert present == {"a", "c", "d"}
    assert cache.stats().evictions == 1


def test_cap_holds_after_every_write(open_cache: Any, probe: StoreProbe, clock: FakeClock) -> None:
    """However the writes arrive, the stored bytes never exceed the cap, checked after each one."""
    cache = open_cache(max_size_mb=10 * KB)
    cap = cache.stats().max_size_bytes
    for i in range(30):
        _put(cache, f"w{i}", text="q" * (300 + 97 * (i % 11)))
        clock.advance(0.5)
        values = probe.values()
        assert sum(len(v) for v in values.values()) <= cap
        assert cache.stats().size_bytes == sum(len(v) for v in values.values())
        if i % 3 == 0:
            cache.get(make_request(f"w{i - 2}"), agent="analyst")
    assert cache.stats().evictions > 0


def test_entry_larger_than_cap_is_not_stored(open_cache: Any, probe: StoreProbe) -> None:
    """An answer bigger than the whole cache is skipped, evicting nothing."""
    cache = open_cache(max_size_mb=4 * KB)
    _put(cache, "small", text="s")
    _put(cache, "huge", text="h" * 10_000)
    assert cache.get(make_request("huge"), agent="analyst") is None
    assert cache.get(make_request("small"), agent="analyst") is not None
    assert len(probe.values()) == 1


def test_every_stored_value_verifies(open_cache: Any, probe: StoreProbe) -> None:
    """What the store holds is exactly what was signed: each value decodes under the secret and its key."""
    cache = open_cache()
    for i in range(5):
        _put(cache, f"v{i}")
    for key, value in probe.values().items():
        assert decode_entry(b"test-secret", key, value).hit.agent == "analyst"


def test_clear_removes_only_its_entries(open_cache: Any, probe: StoreProbe) -> None:
    """clear() empties the store and the counts."""
    cache = open_cache()
    for i in range(3):
        _put(cache, f"c{i}")
    assert cache.clear() == 3
    assert probe.values() == {}
    assert (cache.stats().entries, cache.stats().size_bytes) == (0, 0)
    assert cache.get(make_request("c0"), agent="analyst") is None


def test_refuses_unfinished_completion_and_honours_exclusions(open_cache: Any, probe: StoreProbe) -> None:
    """A completion without stop_reason is refused; excluded agents are neither stored nor counted."""
    cache = open_cache(exclude_agents=("scratch",))
    with pytest.raises(ValueError, match="finished"):
        cache.put(make_request(), make_completion(stop_reason=None), agent="a", cost_usd=0.0, latency_s=1.0)
    cache.put(make_request(), make_completion(), agent="scratch", cost_usd=0.0, latency_s=1.0)
    assert probe.values() == {}
    assert cache.excludes("scratch")
    assert cache.get(make_request(), agent="scratch") is None
    assert cache.stats().misses == 0


def test_unverified_mode_serves_without_checking(open_cache: Any, probe: StoreProbe) -> None:
    """verify_integrity=False still signs entries (a verifying reader accepts them) but skips the check."""
    fast = open_cache(verify_integrity=False)
    key = _put(fast, "fast")
    assert decode_entry(b"test-secret", key, probe.values()[key]).hit.agent == "analyst"
    assert open_cache(verify_integrity=False, secret="other").get(make_request("fast"), agent="analyst")


async def test_async_hit_after_miss_and_refresh(open_cache: Any) -> None:
    """aget/aput behave like their sync twins; a second aput (refresh) replaces the answer."""
    cache = open_cache()
    try:
        assert await cache.aget(make_request(), agent="analyst") is None
        await cache.aput(make_request(), make_completion("v1"), agent="analyst", cost_usd=0.1, latency_s=1.0)
        hit = await cache.aget(make_request(), agent="analyst")
        assert hit is not None
        assert hit.completion.text == "v1"
        await cache.aput(make_request(), make_completion("v2"), agent="analyst", cost_usd=0.1, latency_s=1.0)
        reader = open_cache()
        try:
            hit = await reader.aget(make_request(), agent="analyst")
            assert hit is not None
            assert hit.completion.text == "v2"
        finally:
            await reader.aclose()
    finally:
        await cache.aclose()


async def test_async_damaged_entry_is_removed(open_cache: Any, probe: StoreProbe) -> None:
    """The async path refuses and removes a tampered entry too."""
    writer = open_cache()
    key = _put(writer, "bad")
    probe.set_value(key, probe.values()[key][:50])
    reader = open_cache()
    try:
        assert await reader.aget(make_request("bad"), agent="analyst") is None
        assert reader.stats().integrity_failures == 1
    finally:
        await reader.aclose()
    assert key not in probe.values()


_EDITS = [("expires", "abc"), ("created", "yesterday"), ("hits", "many"), ("agent", b"\xff\xfe")]


def test_an_edited_expiry_is_refused_by_get(open_cache: Any, probe: StoreProbe) -> None:
    """`expires='abc'` (or a Redis expiry that is not a number): get() refuses the entry, counts it and
    removes it, instead of crashing (SQLite) or trusting the signed expiry alone (Redis)."""
    key = _put(open_cache(), "edited")
    probe.set_field(key, "expires", "abc")
    cache = open_cache(memory_max_size_mb=0)
    assert cache.get(make_request("edited"), agent="analyst") is None
    stats = cache.stats()
    assert (stats.integrity_failures, stats.misses, stats.hits) == (1, 1, 0)
    assert key not in probe.values()
    _assert_bytes_exact(cache, probe)


@pytest.mark.parametrize(("field", "value"), _EDITS)
@pytest.mark.parametrize(
    "operation",
    [
        lambda cache, path: cache.entries_frame(),
        lambda cache, path: cache.export_bundle(path / "bundle.json"),
        lambda cache, path: (cache.stats(), cache.entries_frame()),
    ],
    ids=["entries_frame", "export_bundle", "stats"],
)
def test_hand_edited_bookkeeping_is_refused_counted_and_removed(
    open_cache: Any, probe: StoreProbe, tmp_path: Path, field: str, value: object, operation: Any
) -> None:
    """A bookkeeping column edited into nonsense (not a number, not text) makes a corrupt row: listing the
    entries (the frame, an export, stats) does not crash on it; it is refused, counted and removed."""
    key = _put(open_cache(), "edited")
    kept = _put(open_cache(), "untouched")
    probe.set_field(key, field, value)
    cache = open_cache(memory_max_size_mb=0)
    operation(cache, tmp_path)
    assert key not in probe.values() and kept in probe.values()
    assert cache.stats().integrity_failures == 1
    assert list(cache.entries_frame()["key"]) == [kept[:16]]
    _assert_bytes_exact(cache, probe)
