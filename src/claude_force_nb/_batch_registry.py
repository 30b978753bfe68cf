"""The registry of submitted Message Batches: a small SQLite file (0600) in the user's data folder.

Every batch job is written here before its first batch is sent and updated as batches are added (splits,
resubmissions) and as the job is collected, whether or not the run log itself is persisted. It holds what a
fresh process needs to collect a job after a kernel restart: the API batch ids, and per item its input index,
`custom_id`, agent, task, its hold on a shared budget's ledger (lease id and amount, if any) and the request
itself (in the cache key's canonical form, so the answer is stored under the same key an interactive call
would use). It also holds the job's *key* (the hash of its requests in input order and the endpoint), so
re-running a cell while its job is still open finds that job instead of paying for the same batch twice.

The file holds prompts, like the response cache: it is created owner-only. Each method opens its own short
connection, so the registry is safe from any thread and across processes (SQLite's own locking).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._exceptions import ConfigError

__all__ = ["REGISTRY_FILE", "BatchRegistry", "RegisteredItem", "RegisteredJob"]

REGISTRY_FILE = "batches.sqlite3"
_BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    job_key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    created REAL NOT NULL,
    n_items INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (job_key, state);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    batch_id TEXT,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    request TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS leases (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    lease TEXT NOT NULL,
    amount REAL NOT NULL,
    PRIMARY KEY (job_id, idx)
);
"""


@dataclass(frozen=True, slots=True)
class RegisteredItem:
    """One item of a job as the registry holds it (`request` is the cache key's canonical JSON; `lease` and
    `held` name the item's reservation on a shared budget's ledger, so any process can settle it)."""

    index: int
    custom_id: str
    batch_id: str | None
    agent: str
    task: str
    cache_key: str
    request: str
    lease: str | None = None
    held: float = 0.0


@dataclass(frozen=True, slots=True)
class RegisteredJob:
    job_id: str
    job_key: str
    endpoint: str
    created: float
    n_items: int
    state: str  # "open" | "collected" | "cancelled"
    batch_ids: tuple[str, ...]


class BatchRegistry:
    """The registry file at `path` (created 0600, its folder 0700, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_folder(cls, folder: Path) -> BatchRegistry:
        return cls(folder / REGISTRY_FILE)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        fresh = not self.path.exists()
        if fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file owner-only before SQLite opens it, so it is never readable by others.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            db = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"batch registry {self.path}: cannot open ({exc})") from exc
        try:
            db.executescript(_SCHEMA)
            yield db
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"batch registry {self.path}: not a usable SQLite file ({exc})") from exc
        finally:
            db.close()

    # -- writes ---------------------------------------------------------------------------------------------

    def add_job(self, job_id: str, *, job_key: str, endpoint: str, items: Sequence[RegisteredItem]) -> None:
        """Record a new job and its items (before the first batch is sent)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, 'open')",
                (job_id, job_key, endpoint, time.time(), len(items)),
            )
            db.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (job_id, i.index, i.custom_id, i.batch_id, i.agent, i.task, i.cache_key, i.request)
                    for i in items
                ],
            )
            db.executemany(
                "INSERT INTO leases VALUES (?, ?, ?, ?)",
                [(job_id, i.index, i.lease, i.held) for i in items if i.lease is not None],
            )
            db.execute("COMMIT")

    def add_batch(self, job_id: str, batch_id: str, indexes: Sequence[int]) -> None:
        """Record that the job's items at these input indexes were sent in `batch_id`."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR IGNORE INTO batches VALUES (?, ?, ?)", (batch_id, job_id, time.time()))
            db.executemany(  # by primary key: one indexed update per item, never a scan
                "UPDATE items SET batch_id = ? WHERE job_id = ? AND idx = ?",
                [(batch_id, job_id, index) for index in indexes],
            )
            db.execute("COMMIT")

    def set_state(self, job_id: str, state: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET state = ? WHERE job_id = ?", (state, job_id))

    # -- reads ----------------------------------------------------------------------------------------------

    def _job(self, db: sqlite3.Connection, row: tuple[str, str, str, float, int, str]) -> RegisteredJob:
        batch_ids = tuple(
            r[0]
            for r in db.execute("SELECT batch_id FROM batches WHERE job_id = ? ORDER BY created", (row[0],))
        )
        return RegisteredJob(*row, batch_ids=batch_ids)

    def jobs(self) -> list[RegisteredJob]:
        """Every registered job, newest first."""
        if not self.path.exists():
            return []
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created DESC").fetchall()
            return [self._job(db, row) for row in rows]

    def find(self, any_id: str) -> RegisteredJob | None:
        """The job with this job id, or the job one of whose batches has this id."""
        if not self.path.exists():
            return None
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (any_id,)).fetchone()
            if row is None:
                row = db.execute(
                    "SELECT jobs.* FROM jobs JOIN batches USING (job_id) WHERE batch_id = ?", (any_id,)
                ).fetchone()
            return None if row is None else self._job(db, row)

    def open_job(self, job_key: str) -> RegisteredJob | None:
        """The newest job with this key that has not been collected or cancelled yet."""
        if not self.path.exists():
            return None
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE job_key = ? AND state = 'open' ORDER BY created DESC", (job_key,)
            ).fetchone()
            return None if row is None else self._job(db, row)

    def items(self, job_id: str) -> list[RegisteredItem]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT idx, custom_id, batch_id, agent, task, cache_key, request, lease, "
                "coalesce(amount, 0.0) FROM items LEFT JOIN leases USING (job_id, idx) "
                "WHERE job_id = ? ORDER BY idx",
                (job_id,),
            ).fetchall()
        return [RegisteredItem(*row) for row in rows]


def job_key(cache_keys: Sequence[str], endpoint: str) -> str:
    """The key of a job: its requests in input order, and where they go."""
    import hashlib

    digest = hashlib.sha256(endpoint.encode())
    for key in cache_keys:
        digest.update(b"\0" + key.encode())
    return digest.hexdigest()


def canonical_request_json(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
