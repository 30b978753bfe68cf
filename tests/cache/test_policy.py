"""Pure decisions shared by every tier: expiry, eviction planning, backend parsing, settings."""

from __future__ import annotations

import pytest

from claude_force_nb._cache.policy import CacheSettings, is_expired, parse_backend, plan_eviction


@pytest.mark.parametrize(
    ("expires_at", "now", "expired"),
    [(100.0, 99.999, False), (100.0, 100.0, True), (100.0, 100.001, True)],
)
def test_is_expired(expires_at: float, now: float, expired: bool) -> None:
    """An entry is served strictly before its expiry instant."""
    assert is_expired(expires_at, now) is expired


@pytest.mark.parametrize(
    ("lru", "total", "incoming", "cap", "victims"),
    [
        ([("a", 10), ("b", 10)], 20, 10, 30, []),
        ([("a", 10), ("b", 10)], 20, 11, 30, ["a"]),
        ([("a", 10), ("b", 10)], 20, 25, 30, ["a", "b"]),
        ([("a", 5), ("b", 20), ("c", 5)], 30, 10, 30, ["a", "b"]),
        ([], 0, 10, 30, []),
    ],
)
def test_plan_eviction_takes_least_recent_first_until_it_fits(
    lru: list[tuple[str, int]], total: int, incoming: int, cap: int, victims: list[str]
) -> None:
    """Eviction takes the LRU front, and only as much as the incoming entry needs."""
    assert plan_eviction(iter(lru), total=total, incoming=incoming, cap=cap) == victims


def test_plan_eviction_consumes_lazily() -> None:
    """The planner stops reading candidates once it has enough (a SQL cursor is not drained)."""
    seen: list[str] = []

    def candidates():  # type: ignore[no-untyped-def]
        for key in "abcdef":
            seen.append(key)
            yield key, 10

    assert plan_eviction(candidates(), total=60, incoming=15, cap=60) == ["a", "b"]
    assert seen == ["a", "b"]


@pytest.mark.parametrize(
    ("backend", "kind"),
    [("memory", "memory"), ("disk", "disk"), ("redis://h:6379/0", "redis"), ("rediss://h/1", "redis")],
)
def test_parse_backend(backend: str, kind: str) -> None:
    """Backends are 'memory', 'disk' or a Redis URL."""
    assert parse_backend(backend) == kind


def test_parse_backend_refuses_unknown() -> None:
    """A typo is an error, not a silent fallback."""
    with pytest.raises(ValueError, match="backend"):
        parse_backend("dsik")


def test_settings_defaults_and_front_tier_cap() -> None:
    """The front tier defaults to min(max_size_mb, 256 MB); 0 turns it off."""
    mb = 1024 * 1024
    assert CacheSettings.build(backend="disk", max_size_mb=1000).memory_max_size_bytes == 256 * mb
    assert CacheSettings.build(backend="disk", max_size_mb=10).memory_max_size_bytes == 10 * mb
    assert CacheSettings.build(backend="disk", memory_max_size_mb=0).memory_max_size_bytes == 0
    assert CacheSettings.build(backend="disk", ttl_hours=0.5).ttl_s == 1800.0


@pytest.mark.parametrize(
    "kwargs",
    [{"ttl_hours": 0}, {"max_size_mb": -1}, {"max_size_mb": float("nan")}, {"memory_max_size_mb": -1}],
)
def test_settings_refuse_nonsense(kwargs: dict[str, float]) -> None:
    """Zero or negative TTLs and caps are refused at construction."""
    with pytest.raises(ValueError, match="must be"):
        CacheSettings.build(backend="disk", **kwargs)


def test_memory_backend_needs_a_memory_tier() -> None:
    """backend='memory' with the memory tier turned off would store nothing: refused."""
    with pytest.raises(ValueError, match="memory"):
        CacheSettings.build(backend="memory", memory_max_size_mb=0)
