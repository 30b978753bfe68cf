"""Several processes on one disk cache: no corruption, exact accounting, and nothing torn after SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from _cache_support import make_request
from _cache_workers import hammer, write_forever

from claude_force_nb._cache import ResponseCache
from claude_force_nb._cache.disk import DB_FILE_NAME
from claude_force_nb._cache.entry import decode_entry

CTX = multiprocessing.get_context("spawn")


def _check_store(cache_dir: Path, *, cap: int) -> int:
    """The SQLite file is intact, totals equal the rows, the cap holds, and every value verifies."""
    con = sqlite3.connect(cache_dir / DB_FILE_NAME)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        entries, size = con.execute("SELECT entries, bytes FROM totals").fetchone()
        count, total = con.execute("SELECT count(*), coalesce(sum(length(value)), 0) FROM entries").fetchone()
        assert (entries, size) == (count, total)
        assert total <= cap
        for key, value in con.execute("SELECT key, value FROM entries"):
            decode_entry(b"shared", key, value)
        return int(count)
    finally:
        con.close()


@pytest.mark.slow
def test_two_processes_hammering_one_disk_cache(tmp_path: Path) -> None:
    """Two spawned writers/readers with evictions: no integrity failure anywhere, accounting exact."""
    results = CTX.Queue()
    workers = [CTX.Process(target=hammer, args=(str(tmp_path), seed, 1000, results)) for seed in (1, 2)]
    for worker in workers:
        worker.start()
    failures = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert failures == [0, 0]
    assert _check_store(tmp_path, cap=int(0.03 * 1024 * 1024)) > 0


@pytest.mark.slow
def test_writer_killed_mid_write_leaves_nothing_torn(tmp_path: Path) -> None:
    """SIGKILL a child in the middle of a loop of large puts, three times: every entry left is whole."""
    for attempt in range(3):
        ready = CTX.Event()
        child = CTX.Process(target=write_forever, args=(str(tmp_path), ready))
        child.start()
        assert ready.wait(timeout=60)
        time.sleep(0.05 + 0.07 * attempt)
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(timeout=30)
        assert child.exitcode == -signal.SIGKILL
    assert _check_store(tmp_path, cap=int(0.5 * 1024 * 1024)) > 0
    with ResponseCache("disk", cache_dir=tmp_path, secret="shared") as cache:
        served = [cache.get(make_request(f"k{i}"), agent="a") for i in range(60)]
        for i, hit in enumerate(served):
            assert hit is None or hit.completion.text.startswith(f"k{i} ")
        assert cache.stats().integrity_failures == 0
        assert any(served)
