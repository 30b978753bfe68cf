"""Fixtures for the response-cache tests: isolated dirs and env, a controllable clock, Redis, store access.

Nothing here touches the real HOME: every test runs with HOME and the XDG dirs pointed into its tmp_path and
the package's env vars removed, and every cache gets an explicit `environ` or `secret`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cache_support import FakeClock, StoreProbe

from claude_force_nb._cache import ResponseCache
from claude_force_nb._cache.disk import DB_FILE_NAME

_PACKAGE_VARS = (
    "CLAUDE_CACHE_SECRET",
    "CLAUDE_FORCE_NB_CACHE_DIR",
    "CLAUDE_FORCE_NB_CONFIG_DIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point HOME into tmp_path and drop the package's env vars, so a forgotten argument cannot leak out."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in _PACKAGE_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """A fake environment whose cache and config dirs live in tmp_path (config apart from cache)."""
    return {
        "HOME": str(tmp_path / "home"),
        "CLAUDE_FORCE_NB_CACHE_DIR": str(tmp_path / "cache"),
        "CLAUDE_FORCE_NB_CONFIG_DIR": str(tmp_path / "config"),
    }


# -- Redis (the server fixtures, redis_url and private_redis, are in tests/conftest.py) ---------------------


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so tests sharing one server never see each other's keys."""
    return f"cfnb-test:{uuid.uuid4().hex[:12]}:"


# -- persistent tiers, parametrised --------------------------------------------------------------------------


@pytest.fixture(params=["disk", pytest.param("redis", marks=pytest.mark.redis)])
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Keyword arguments for a ResponseCache on each persistent tier, plus a probe of that tier's store."""
    if request.param == "disk":
        cache_dir = tmp_path / "cache"
        return {
            "kwargs": {"backend": "disk", "cache_dir": cache_dir},
            "probe": StoreProbe("disk", path=cache_dir / DB_FILE_NAME),
        }
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    return {
        "kwargs": {"backend": url, "redis_prefix": prefix},
        "probe": StoreProbe("redis", url=url, prefix=prefix),
    }


@pytest.fixture
def open_cache(tier: dict[str, Any], clock: FakeClock) -> Iterator[Any]:
    """Build caches on the parametrised tier (shared secret and clock unless overridden); closes them all."""
    made: list[ResponseCache] = []

    def build(**overrides: Any) -> ResponseCache:
        kwargs = {**tier["kwargs"], "secret": "test-secret", "clock": clock, **overrides}
        cache = ResponseCache(**kwargs)
        made.append(cache)
        return cache

    yield build
    for cache in made:
        cache.close()


@pytest.fixture
def probe(tier: dict[str, Any]) -> StoreProbe:
    return tier["probe"]  # type: ignore[no-any-return]
