"""Disk-tier specifics: file ownership, permissions, start-up, and what the SQLite file holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import stat
from pathlib import Path

import pytest
from _cache_support import make_completion, make_request

from claude_force_nb import CacheUnavailableError
from claude_force_nb._cache import ResponseCache
from claude_force_nb._cache.disk import DB_FILE_NAME


def _fill(cache: ResponseCache, n: int = 3) -> None:
    for i in range(n):
        cache.put(make_request(f"t{i}"), make_completion(), agent="a", cost_usd=0.01, latency_s=1.0)


def test_foreign_files_survive_startup_and_clear(tmp_path: Path) -> None:
    """The user's own files in the cache folder (JSON too) are never deleted: not at start, not by clear."""
    folder = tmp_path / "shared-folder"
    folder.mkdir()
    mine = {
        "claude.json": '{"agents": {}}',
        "notes.json": "{}",
        "data.sqlite3": "not ours",
        "sub/x.json": "{}",
    }
    for name, text in mine.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    with ResponseCache("disk", cache_dir=folder, secret="s") as cache:
        _fill(cache)
        assert cache.clear() == 3
    with ResponseCache("disk", cache_dir=folder, secret="s") as again:
        assert again.stats().entries == 0
    for name, text in mine.items():
        assert (folder / name).read_text() == text


def test_default_location_comes_from_the_environment(environ: dict[str, str]) -> None:
    """Without cache_dir, the store lives in read_environment().cache_dir (here a tmp dir)."""
    with ResponseCache("disk", environ=environ) as cache:
        _fill(cache, 1)
    assert (Path(environ["CLAUDE_FORCE_NB_CACHE_DIR"]) / DB_FILE_NAME).is_file()


def test_database_file_is_private(tmp_path: Path) -> None:
    """The store holds prompts and answers: its file is created 0600."""
    with ResponseCache("disk", cache_dir=tmp_path / "c", secret="s") as cache:
        _fill(cache, 1)
    assert stat.S_IMODE((tmp_path / "c" / DB_FILE_NAME).stat().st_mode) == 0o600


def test_totals_match_rows_and_nothing_is_pickled(tmp_path: Path) -> None:
    """The triggers keep the totals row equal to the rows; values are MAC + JSON, never pickle."""
    with ResponseCache("disk", cache_dir=tmp_path, secret="s") as cache:
        _fill(cache, 5)
        cache.put(make_request("t1"), make_completion("other"), agent="a", cost_usd=0.01, latency_s=1.0)
    con = sqlite3.connect(tmp_path / DB_FILE_NAME)
    try:
        entries, size = con.execute("SELECT entries, bytes FROM totals").fetchone()
        count, total = con.execute("SELECT count(*), sum(length(value)) FROM entries").fetchone()
        assert (entries, size) == (count, total) == (5, total)
        for (value,) in con.execute("SELECT value FROM entries"):
            assert value[32:33] == b"{"
            assert b"\x80\x04" not in value[:40]  # no pickle protocol header
    finally:
        con.close()


def test_a_newer_schema_is_refused_not_overwritten(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A database written by a future schema is left alone: the cache is off, with one warning saying why."""
    with ResponseCache("disk", cache_dir=tmp_path, secret="s") as cache:
        _fill(cache, 1)
    con = sqlite3.connect(tmp_path / DB_FILE_NAME)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with caplog.at_level(logging.WARNING), ResponseCache("disk", cache_dir=tmp_path, secret="s") as cache:
        assert cache.off and cache.get(make_request("t0"), agent="a") is None
        with pytest.raises(CacheUnavailableError, match="schema 99"):
            cache.clear()
    assert [r.getMessage() for r in caplog.records if "schema 99" in r.getMessage()] != []
    con = sqlite3.connect(tmp_path / DB_FILE_NAME)
    assert con.execute("SELECT count(*) FROM entries").fetchone() == (1,)  # untouched
    con.close()


def test_hits_are_recorded_in_the_store(tmp_path: Path) -> None:
    """Hits (memory ones included) reach the store's hits/last_access columns, which LRU orders by."""
    t = [1000.0]
    with ResponseCache("disk", cache_dir=tmp_path, secret="s", clock=lambda: t[0]) as cache:
        _fill(cache, 2)
        for _ in range(3):
            t[0] += 10
            assert cache.get(make_request("t0"), agent="a") is not None
        frame = cache.entries_frame()
    by_hits = dict(zip(frame["key"], frame["hits"], strict=True))
    assert sorted(by_hits.values()) == [0, 3]
    assert frame.iloc[0]["hits"] == 3  # most recently accessed first


async def test_memory_hit_stays_on_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A memory-tier hit in aget never hops to a thread."""
    cache = ResponseCache("disk", cache_dir=tmp_path, secret="s")
    try:
        await cache.aput(make_request(), make_completion(), agent="a", cost_usd=0.0, latency_s=1.0)
        loop = asyncio.get_running_loop()

        def no_threads(*args: object) -> None:
            raise AssertionError("memory hit went to a thread")

        monkeypatch.setattr(loop, "run_in_executor", no_threads)
        assert await cache.aget(make_request(), agent="a") is not None
    finally:
        monkeypatch.undo()
        await cache.aclose()


def test_text_typed_value_from_a_hand_edit_is_an_integrity_failure(tmp_path: Path) -> None:
    """A hand edit leaving TEXT in the value column (`value || X'21'`) is refused and removed, no crash."""
    cache = ResponseCache("disk", cache_dir=tmp_path, secret="s", memory_max_size_mb=0)
    request = make_request("victim")
    cache.put(request, make_completion("victim"), agent="a", cost_usd=0.1, latency_s=1.0)
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE_NAME)) as db, db:
        db.execute("UPDATE entries SET value = substr(value, 1, length(value) - 1) || X'21'")
        assert db.execute("SELECT typeof(value) FROM entries").fetchone() == ("text",)
    assert cache.get(request, agent="a") is None
    stats = cache.stats()
    assert (stats.integrity_failures, stats.entries) == (1, 0)
    cache.close()


def test_busy_database_is_retried_then_gives_up() -> None:
    """A 'database is locked' answer is retried until it clears; other errors and a timeout are raised."""
    from claude_force_nb._cache.disk import retry_while_busy

    answers = [sqlite3.OperationalError("database is locked")] * 2 + [None]

    def flaky() -> None:
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    retry_while_busy(flaky, 5.0, pause_s=0.0)
    assert answers == []

    def broken() -> None:
        raise sqlite3.OperationalError("no such table: x")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_while_busy(broken, 5.0, pause_s=0.0)

    def always_locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_while_busy(always_locked, 0.05, pause_s=0.01)
