"""The disk tier: one SQLite database, used directly.

Why SQLite directly, and not diskcache or files:

- *Exact bytes, cap after every write.* One table holds every entry with its agent, model, created,
  last_access, expires and hits; a one-row `totals` table holds the entry count and byte count, kept by
  triggers on the entries table. So every insert, overwrite and delete (ours, a sweep's, even a hand edit in
  the sqlite3 shell) moves the count in the same transaction as the row, and a write that would pass the cap
  evicts inside that same transaction. diskcache culls lazily (`cull_limit` rows per set) and keeps its own
  size metadata that counts file-backed values differently, so "the cap holds after every write" would not be
  ours to guarantee.
- *True LRU across processes.* Eviction orders by the `last_access` column (indexed), which every process
  updates (see `ResponseCache` for how hits are batched); diskcache's LRU policy writes on every get but its
  eviction is still lazy.
- *Atomicity.* WAL mode: a writer killed mid-transaction leaves the old state; readers never see a half
  written row, and never wait for a writer. `synchronous=NORMAL` (no fsync per commit) may lose the last
  commits on power loss, never consistency; that is the right trade for a cache.
- *Ownership.* The cache owns exactly one file (`responses.sqlite3`, plus SQLite's `-wal`/`-shm`), created
  0600. `clear()` deletes rows, never files: whatever else lives in the folder is left alone.

Reads run inline, writes off the loop. Measured on the 2-core dev box (p50, 2 KB values): a primary-key
SELECT takes ~4 us inline, while any hop to a thread (`run_in_executor` on a dedicated single-thread
executor: ~110 us; `asyncio.to_thread`: ~115 us) costs 25x more than the read itself. And in WAL mode a
reader takes no lock a writer holds, so it cannot sit in SQLite's busy-wait. Writes can (another process may
hold the write lock for a while), so `aput_many`/`adiscard` go to a dedicated single-thread executor.

Each thread gets its own connection (SQLite connections are not for concurrent use); a forked child opens
fresh ones instead of sharing the parent's file locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .policy import plan_eviction
from .store import (
    CorruptRow,
    EntryInfo,
    LookupResult,
    PutItem,
    StoredRow,
    Touch,
    WriteOutcome,
    bookkeeping_time,
    entry_info,
    parse_row,
)

__all__ = ["DB_FILE_NAME", "DEFAULT_BUSY_TIMEOUT_S", "DiskStore"]

DB_FILE_NAME = "responses.sqlite3"
DEFAULT_BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's write transaction (they last milliseconds)."""
_SCHEMA_VERSION = 1

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL,
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        created REAL NOT NULL,
        last_access REAL NOT NULL,
        expires REAL NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS entries_by_access ON entries (last_access, key)",
    "CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires)",
    """CREATE TABLE IF NOT EXISTS totals (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        entries INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO totals (id, entries, bytes) VALUES (0, 0, 0)",
    """CREATE TRIGGER IF NOT EXISTS entries_counted_insert AFTER INSERT ON entries BEGIN
        UPDATE totals SET entries = entries + 1, bytes = bytes + length(NEW.value) WHERE id = 0;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_counted_delete AFTER DELETE ON entries BEGIN
        UPDATE totals SET entries = entries - 1, bytes = bytes - length(OLD.value) WHERE id = 0;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_counted_update AFTER UPDATE OF value ON entries BEGIN
        UPDATE totals SET bytes = bytes - length(OLD.value) + length(NEW.value) WHERE id = 0;
    END""",
)
# A value's size is SQLite's length(value): the stored bytes, MAC included. There is no separate size column
# on purpose: a second source of truth could only disagree with the first.

_UPSERT = """
INSERT INTO entries (key, value, agent, model, created, last_access, expires, hits)
VALUES (?, ?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (key) DO UPDATE SET
    value = excluded.value, agent = excluded.agent, model = excluded.model, created = excluded.created,
    last_access = excluded.last_access, expires = excluded.expires, hits = 0
"""
_TOUCH = "UPDATE entries SET last_access = max(last_access, ?), hits = hits + ? WHERE key = ?"
_COLUMNS = "key, CAST(value AS BLOB), agent, model, created, last_access, expires, hits"
# CAST: a hand edit can leave a TEXT value (`value || X'21'` is TEXT in SQLite); read it as the bytes it is,
# so it fails its signature check like any other tampering instead of surprising the decoder.
_LOOKUP = "SELECT CAST(value AS BLOB), expires FROM entries WHERE key = ?"
# A report lists rows straight from SQL when their bookkeeping is as the store writes it (a BLOB value, TEXT
# agent and model, finite numeric times, an integer hit count); any other row (a hand edit) is read whole and
# judged by `parse_row`, as `rows()` judges it. SQL says whether the value is a BLOB (typeof() reads no
# value); the rest is checked on the fetched tuples, which costs less than evaluating it per row in SQL.
_ENTRIES = (
    "SELECT key, agent, model, length(value), created, last_access, expires, hits, typeof(value) = 'blob' "
    "FROM entries ORDER BY last_access DESC, key DESC"
)
_LIMIT = 1e308


def _sound(row: tuple[Any, ...]) -> bool:
    _, agent, model, _, created, last_access, expires, hits, blob = row
    return (
        blob == 1
        and type(agent) is str
        and type(model) is str
        and type(hits) is int
        and type(created) in _NUMBERS
        and type(last_access) in _NUMBERS
        and type(expires) in _NUMBERS
        and -_LIMIT <= created <= _LIMIT
        and -_LIMIT <= last_access <= _LIMIT
        and -_LIMIT <= expires <= _LIMIT
    )


_NUMBERS = (float, int)
_ONE_ROW = f"SELECT {_COLUMNS} FROM entries WHERE key = ?"


def retry_while_busy(statement: Callable[[], object], timeout_s: float, *, pause_s: float = 0.01) -> None:
    """Run `statement`, retrying while SQLite says the database is locked or busy, for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            message = str(exc).lower()
            if ("locked" not in message and "busy" not in message) or time.monotonic() >= deadline:
                raise
        time.sleep(pause_s)


def _row(values: tuple[object, ...]) -> StoredRow | CorruptRow:
    key, *columns = values
    return parse_row(str(key), *columns)


class DiskStore:
    """The SQLite store under `directory` (see the module docstring)."""

    def __init__(self, directory: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.directory = directory
        self.path = directory / DB_FILE_NAME
        self.description = str(self.path)
        self.reads_inline = True  # see "Reads run inline" above
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Create the file private before SQLite does (SQLite would use the umask, typically 0644; its -wal and
        # -shm files copy the main file's mode).
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        try:
            self._init_schema(self._conn())
        except BaseException:
            self.close()  # a refused database (e.g. a newer schema) must not leak the connection just opened
            raise

    # -- connections -----------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("the response cache is closed")
        pid = os.getpid()
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None or self._local.pid != pid:
            con = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            try:
                # Two processes opening one new database at once can get "database is locked" straight back
                # from the switch to WAL (SQLite skips the busy handler while another connection is setting
                # up or recovering the WAL index), so that one statement is retried up to the busy timeout.
                retry_while_busy(lambda: con.execute("PRAGMA journal_mode=WAL"), self._busy_timeout_s)
            except BaseException:
                con.close()
                raise
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con, self._local.pid = con, pid
            with self._lock:
                self._connections.append(con)
        return con

    def _init_schema(self, con: sqlite3.Connection) -> None:
        with _transaction(con):
            (version,) = con.execute("PRAGMA user_version").fetchone()
            if version not in (0, _SCHEMA_VERSION):
                raise ValueError(
                    f"{self.path} has cache schema {version}; this version reads {_SCHEMA_VERSION}"
                )
            for statement in _SCHEMA:
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _offload(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cfnb-cache-disk")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @property
    def executor(self) -> Executor:
        """The store's single writer thread (also used by `ResponseCache` for background touch flushes)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cfnb-cache-disk")
        return self._executor

    # -- reads -----------------------------------------------------------------------------------------------

    def lookup(self, key: str) -> LookupResult:
        # The hot path of a disk hit: two columns, no row object. The temporary cursor is dropped at once,
        # which resets the statement and ends the read snapshot (so checkpoints are never held up).
        row = self._conn().execute(_LOOKUP, (key,)).fetchone()
        return LookupResult(None) if row is None else LookupResult(row[0], bookkeeping_time(row[1]))

    async def alookup(self, key: str) -> LookupResult:
        return self.lookup(key)  # inline on purpose: see the module docstring's measurement

    def usage(self) -> tuple[int, int]:
        entries, size = self._conn().execute("SELECT entries, bytes FROM totals WHERE id = 0").fetchall()[0]
        return int(entries), int(size)

    def rows(self) -> list[StoredRow | CorruptRow]:
        return [_row(r) for r in self._conn().execute(f"SELECT {_COLUMNS} FROM entries ORDER BY last_access")]

    def entries(self) -> tuple[list[EntryInfo], list[CorruptRow]]:
        # length(value) is the same measure the byte count uses; SQLite answers it from the record header,
        # without reading the value's overflow pages, so a report never loads the answers themselves. One
        # scan; its last column says whether the row's bookkeeping is as the store writes it.
        con = self._conn()
        rows = con.execute(_ENTRIES).fetchall()
        if all(map(_sound, rows)):
            return rows, []
        listed: list[EntryInfo] = []
        corrupt: list[CorruptRow] = []
        for row in rows:
            if _sound(row):
                listed.append(row)
                continue
            whole = con.execute(_ONE_ROW, (row[0],)).fetchone()
            judged = _row(whole) if whole is not None else None
            if isinstance(judged, CorruptRow):
                corrupt.append(judged)
            elif judged is not None:
                listed.append(entry_info(judged))
        return listed, corrupt

    # -- writes ----------------------------------------------------------------------------------------------

    def put_many(
        self, items: Sequence[PutItem], *, now: float, cap: int, touches: Mapping[str, Touch]
    ) -> WriteOutcome:
        con = self._conn()
        evicted: list[str] = []
        with _transaction(con):
            # This process's pending hits land first, so its own eviction below sees its true LRU order.
            _apply_touches(con, touches)
            expired = _sweep(con, now)
            for item in items:
                size = len(item.value)
                if size > cap:
                    continue
                old = con.execute("SELECT length(value) FROM entries WHERE key = ?", (item.key,)).fetchall()
                (total,) = con.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()
                candidates = con.execute(
                    "SELECT key, length(value) FROM entries WHERE key != ? ORDER BY last_access, key",
                    (item.key,),
                )
                victims = plan_eviction(
                    candidates, total=int(total) - (int(old[0][0]) if old else 0), incoming=size, cap=cap
                )
                candidates.close()
                con.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in victims])
                evicted.extend(victims)
                con.execute(
                    _UPSERT, (item.key, item.value, item.agent, item.model, item.created, now, item.expires)
                )
        return WriteOutcome(evicted=tuple(evicted), expired=expired)

    async def aput_many(
        self, items: Sequence[PutItem], *, now: float, cap: int, touches: Mapping[str, Touch]
    ) -> WriteOutcome:
        return await self._offload(lambda: self.put_many(items, now=now, cap=cap, touches=touches))

    def discard(self, key: str, value: bytes) -> bool:
        return (
            self._conn()
            .execute("DELETE FROM entries WHERE key = ? AND CAST(value AS BLOB) = ?", (key, value))
            .rowcount
            > 0
        )

    async def adiscard(self, key: str, value: bytes) -> bool:
        return await self._offload(lambda: self.discard(key, value))

    def delete(self, key: str) -> bool:
        return self._conn().execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0

    def flush_touches(self, touches: Mapping[str, Touch]) -> None:
        if touches:
            con = self._conn()
            with _transaction(con):
                _apply_touches(con, touches)

    def sweep(self, now: float) -> tuple[str, ...]:
        con = self._conn()
        with _transaction(con):
            return _sweep(con, now)

    def clear(self) -> int:
        # Rows only: the folder may hold the user's own files, and they are not ours.
        return self._conn().execute("DELETE FROM entries").rowcount

    # -- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            connections, self._connections = self._connections, []
        for con in connections:
            with contextlib.suppress(sqlite3.Error):
                con.close()
        self._closed = True

    async def aclose(self) -> None:
        # Waiting for the writer thread to drain may block; do it off the loop.
        await asyncio.get_running_loop().run_in_executor(None, self.close)


@contextlib.contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so a read-then-write inside cannot be invalidated by another
    # process's commit in between (a DEFERRED transaction would fail with SQLITE_BUSY at the first write).
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _apply_touches(con: sqlite3.Connection, touches: Mapping[str, Touch]) -> None:
    con.executemany(_TOUCH, [(at, count, key) for key, (at, count) in touches.items()])


def _sweep(con: sqlite3.Connection, now: float) -> tuple[str, ...]:
    keys = tuple(k for (k,) in con.execute("SELECT key FROM entries WHERE expires <= ?", (now,)).fetchall())
    if keys:
        con.execute("DELETE FROM entries WHERE expires <= ?", (now,))
    return keys
