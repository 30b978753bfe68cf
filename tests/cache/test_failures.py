"""A broken cache never breaks calls: unusable files and folders, a frozen or dead Redis, closing after it."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from _cache_support import make_completion, make_request
from tests.redis_support import RedisServer

from claude_force_nb import AsyncAgentOrchestrator, CacheUnavailableError, define_agent
from claude_force_nb._cache import ResponseCache
from claude_force_nb._cache.disk import DB_FILE_NAME
from claude_force_nb.sim import Simulator


def _orchestrator(sim: Simulator, **options: Any) -> AsyncAgentOrchestrator:
    define_agent("analyst", "You analyse.")
    return AsyncAgentOrchestrator(base_url=sim.base_url, api_key="sim", max_retries=0, **options)


def _cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "cache" in r.getMessage()
    ]


def _corrupt_file(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / DB_FILE_NAME
    path.write_bytes(b"this is not a database, it is a text file " * 200)
    return path


def _file_in_place_of_folder(folder: Path) -> Path:
    folder.write_text("a file where the cache folder should be")
    return folder / DB_FILE_NAME


@pytest.mark.parametrize("breakage", [_corrupt_file, _file_in_place_of_folder])
async def test_an_unusable_disk_cache_means_no_cache(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, breakage: Any
) -> None:
    """A corrupt cache file or an unusable cache_dir: every call succeeds, one warning names the file and
    the fix, the file is left as it was, and the reporting API answers without raising."""
    folder = tmp_path / "cache"
    path = breakage(folder)
    before = path.read_bytes() if path.is_file() else None
    with caplog.at_level(logging.WARNING):
        async with _orchestrator(sim, cache_dir=folder) as orch:
            results = [await orch.execute_agent("analyst", f"task {i % 2}") for i in range(4)]
            assert orch.cache is not None
            stats = orch.cache.stats()
            assert orch.cache.entries_frame().empty
            with pytest.raises(CacheUnavailableError, match=r"move responses\.sqlite3 aside"):
                orch.cache.export_bundle(tmp_path / "bundle.json")
    assert all(r.success for r in results) and not any(r.cached for r in results)
    assert len(sim.requests) == 4  # nothing was served from a cache that cannot be read
    warnings = _cache_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and "move responses.sqlite3 aside" in warnings[0]
    assert (stats.hits, stats.entries, stats.errors) == (0, 0, 1)
    if before is not None:
        assert path.read_bytes() == before  # a user's file is never deleted or rewritten


@pytest.mark.redis
async def test_a_frozen_redis_costs_one_short_deadline(
    sim: Simulator, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped with SIGSTOP: calls go on after `cache_timeout_s` (not two 5 s socket timeouts each),
    counted as errors and misses, with one warning; the frozen store is then left alone for a while."""
    timeout_s = 0.3
    with caplog.at_level(logging.WARNING):
        async with _orchestrator(
            sim, cache_backend=private_redis.url, cache_timeout_s=timeout_s, max_concurrent=4
        ) as orch:
            assert (await orch.execute_agent("analyst", "warm-up")).success
            os.kill(private_redis.process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                first = await orch.execute_agent("analyst", "frozen 1")
                first_s = time.monotonic() - started
                started = time.monotonic()
                rest = [await orch.execute_agent("analyst", f"frozen {i}") for i in range(2, 6)]
                rest_s = time.monotonic() - started
                assert orch.cache is not None
                stats = orch.cache.stats()
            finally:
                os.kill(private_redis.process.pid, signal.SIGCONT)
    assert first.success and all(r.success for r in rest)
    assert timeout_s <= first_s < 5.0  # waited for the deadline, not for redis-py's 5 s socket timeout
    assert rest_s < first_s + 2.0  # the frozen store is skipped, not waited for, by the next calls
    assert stats.errors == 1 and stats.misses >= 2
    warnings = _cache_warnings(caplog)
    assert len(warnings) == 1 and private_redis.url in warnings[0], warnings
    # Whichever fires first says so: the guard's deadline, or redis-py's socket timeout (the same value)
    assert f"no answer within {timeout_s:g} s" in warnings[0] or "Timeout reading" in warnings[0]


@pytest.mark.redis
async def test_closing_after_redis_died_does_not_raise(sim: Simulator, private_redis: RedisServer) -> None:
    """Every call succeeded, then Redis died: leaving `async with` (which records pending hits) is quiet."""
    async with _orchestrator(sim, cache_backend=private_redis.url) as orch:
        first = await orch.execute_agent("analyst", "same task")
        second = await orch.execute_agent("analyst", "same task")  # a memory hit: a pending touch to flush
        private_redis.stop()
    assert first.success and second.success and second.cached


@pytest.mark.redis
def test_sync_close_after_redis_died_does_not_raise(private_redis: RedisServer) -> None:
    """The sync twin: `close()` with hits to record and the server gone returns quietly."""
    cache = ResponseCache(private_redis.url, secret="s", timeout_s=0.5)
    cache.put(make_request(), make_completion(), agent="a", cost_usd=0.01, latency_s=1.0)
    assert cache.get(make_request(), agent="a") is not None
    private_redis.stop()
    cache.close()
    with pytest.raises(CacheUnavailableError, match="Redis server is running"):
        cache.clear()


def test_cache_timeout_must_be_a_positive_number(tmp_path: Path) -> None:
    """The deadline is validated like every other numeric argument."""
    for bad in (0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="timeout_s"):
            ResponseCache("memory", timeout_s=bad)  # type: ignore[arg-type]


def _overwrite_in_place(*paths: Path) -> None:
    for path in paths:  # in place (not a new file): the open connection reads the garbage
        with open(path, "r+b") as handle:
            handle.write(b"garbage!" * 4096)


async def test_a_cache_file_damaged_while_open_degrades_to_misses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database overwritten in place while a cache has it open: lookups become misses, stores are
    skipped, one warning, `errors` counts them, closing is quiet."""
    cache = ResponseCache("disk", cache_dir=tmp_path, secret="s", memory_max_size_mb=0)
    await cache.aput(make_request("a"), make_completion(), agent="x", cost_usd=0.01, latency_s=1.0)
    _overwrite_in_place(tmp_path / DB_FILE_NAME, tmp_path / (DB_FILE_NAME + "-wal"))
    with caplog.at_level(logging.WARNING):
        assert await cache.aget(make_request("a"), agent="x") is None
        await cache.aput(make_request("b"), make_completion(), agent="x", cost_usd=0.01, latency_s=1.0)
        assert cache.get(make_request("b"), agent="x") is None
        stats = cache.stats()
        await cache.aclose()
    assert stats.errors >= 1 and stats.hits == 0 and stats.misses == 2
    warnings = _cache_warnings(caplog)
    assert len(warnings) == 1 and str(tmp_path / DB_FILE_NAME) in warnings[0], warnings
