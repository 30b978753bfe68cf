"""What stats() and entries_frame() report, and the package facade."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from _cache_support import FakeClock, make_completion, make_request

import claude_force_nb._cache as cache_pkg
from claude_force_nb._cache import CacheStats, ResponseCache


def test_stats_content_and_frame(tmp_path: Path, clock: FakeClock) -> None:
    """Counters, savings (unpriced hits excluded from cost) and contents, as a one-row frame."""
    with ResponseCache("disk", cache_dir=tmp_path, secret="s", clock=clock) as cache:
        assert cache.stats().hit_rate == 0.0
        cache.put(make_request("p"), make_completion(), agent="a", cost_usd=0.25, latency_s=2.0)
        cache.put(make_request("u"), make_completion(), agent="a", cost_usd=math.nan, latency_s=1.0)
        for task in ("p", "p", "u", "missing"):
            cache.get(make_request(task), agent="a")
        stats = cache.stats()
        assert isinstance(stats, CacheStats)
        assert (stats.hits, stats.misses, stats.hit_rate) == (3, 1, 0.75)
        assert (stats.cost_saved_usd, stats.time_saved_s) == (0.5, 5.0)
        assert stats.entries == 2
        assert stats.size_bytes > 0
        assert stats.max_size_bytes == 1000 * 1024 * 1024
        frame = stats.to_frame()
        assert frame.shape[0] == 1
        assert {"hits", "misses", "hit_rate", "entries", "size_bytes", "max_size_bytes", "evictions"} <= set(
            frame.columns
        )
        assert {"expirations", "integrity_failures", "cost_saved_usd", "time_saved_s"} <= set(frame.columns)


def test_entries_frame_content(tmp_path: Path, clock: FakeClock) -> None:
    """One row per entry with key prefix, agent, model, bytes, times, hits and remaining TTL (and the task
    when asked: the bookkeeping is the same with or without it)."""
    with ResponseCache("disk", cache_dir=tmp_path, secret="s", clock=clock, ttl_hours=2) as cache:
        assert list(cache.entries_frame(tasks=True).columns) == [
            "key",
            "agent",
            "task",
            "model",
            "bytes",
            "created",
            "last_access",
            "hits",
            "expires_in_s",
        ]
        cache.put(make_request("x"), make_completion("abc"), agent="writer", cost_usd=0.0, latency_s=1.0)
        clock.advance(60)
        cache.get(make_request("x"), agent="writer")
        frame = cache.entries_frame(tasks=True)
        pd.testing.assert_frame_equal(cache.entries_frame(), frame.drop(columns="task"))
        (row,) = frame.to_dict("records")
        assert cache.key(make_request("x")).startswith(row["key"])
        assert (row["agent"], row["model"], row["hits"]) == ("writer", "claude-sonnet-5-5", 1)
        assert row["task"] == "x"
        assert row["bytes"] == cache.stats().size_bytes
        assert row["expires_in_s"] == 7200 - 60
        assert row["last_access"] - row["created"] == pd.Timedelta(seconds=60)


def test_all_is_sorted_and_complete() -> None:
    """The facade's __all__ is sorted (ruff's isort-style order) and every name in it exists."""
    names = cache_pkg.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in names:
        assert hasattr(cache_pkg, name)
    assert {"ResponseCache", "CacheHit", "CacheStats", "request_key"} <= set(names)


def test_entries_frame_previews_each_task_on_one_line(tmp_path: Path, clock: FakeClock) -> None:
    """The task column shows the start of the task (which answer survived an eviction), on one line, without
    the prompt's <task> wrapper; an entry whose signature fails is not decoded."""
    long_task = "<task>\nReview the payment module\nfor rounding errors " + "and more " * 20 + "</task>"
    with ResponseCache("disk", cache_dir=tmp_path, secret="s", clock=clock) as cache:
        cache.put(make_request(long_task), make_completion(), agent="a", cost_usd=0.0, latency_s=1.0)
        (row,) = cache.entries_frame(tasks=True).to_dict("records")
        assert "task" not in cache.entries_frame().columns  # the bookkeeping alone unless asked
    assert row["task"].startswith("Review the payment module for rounding errors and more")
    assert len(row["task"]) == 60 and row["task"].endswith("…") and "\n" not in row["task"]
    with ResponseCache("disk", cache_dir=tmp_path, secret="another secret", clock=clock) as other:
        (row,) = other.entries_frame(tasks=True).to_dict("records")
    assert row["task"] == "(unverified entry)"


def test_stats_repr_rounds_but_values_stay_exact(tmp_path: Path, clock: FakeClock) -> None:
    """`CacheStats` prints $0.003938, not 0.003938400000000001; the attribute keeps the exact sum."""
    with ResponseCache("memory", secret="s", clock=clock) as cache:
        for task, cost in (("a", 0.0012), ("b", 0.0027384)):
            cache.put(make_request(task), make_completion(), agent="a", cost_usd=cost, latency_s=1.0 / 3)
            cache.get(make_request(task), agent="a")
        stats = cache.stats()
    assert stats.cost_saved_usd == 0.0012 + 0.0027384
    assert "cost_saved_usd=$0.003938," in repr(stats)
    assert "time_saved_s=0.67 s" in repr(stats) and "hit_rate=100.0%" in repr(stats)


def test_entries_frame_on_every_tier(open_cache: Any, clock: FakeClock) -> None:
    """Each persistent tier lists its entries most recently used first, with sizes that add up to the
    store's byte count and the hits recorded so far."""
    cache = open_cache()
    for task in ("first", "second", "third"):
        cache.put(make_request(task), make_completion(task * 40), agent="w", cost_usd=0.0, latency_s=1.0)
        clock.advance(1)
    cache.get(make_request("first"), agent="w")
    cache.get(make_request("first"), agent="w")
    frame = cache.entries_frame()
    keys = [cache.key(make_request(t))[:16] for t in ("first", "third", "second")]
    assert list(frame["key"]) == keys
    assert list(frame["hits"]) == [2, 0, 0]
    assert frame["bytes"].sum() == cache.stats().size_bytes
    assert (frame["agent"] == "w").all()
