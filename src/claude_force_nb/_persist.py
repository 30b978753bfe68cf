"""Keeping the run log across kernel restarts: finished records in a SQLite file the user chooses.

One table, one row per call (`run_id` primary key, the record as JSON), written when a call finishes. Loading
puts earlier sessions' records in front of the new ones, so `%agent runs` and the charts keep the whole
history of a long analysis. The file holds prompts and answers, so it is created readable by its owner only
(0600; SQLite's `-wal`/`-shm` files copy that mode), and any folder created for it is 0700. An existing file
or folder keeps the mode its owner gave it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from ._exceptions import ConfigError
from ._records import AttemptSpan, RunLog, RunRecord

__all__ = ["RunStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    queued_at REAL NOT NULL,
    record TEXT NOT NULL
)
"""


def _record_from_json(text: str) -> RunRecord:
    data = json.loads(text)
    spans = [AttemptSpan(**span) for span in data.pop("spans", [])]
    fields = RunRecord.__dataclass_fields__
    record = RunRecord(**{k: v for k, v in data.items() if k in fields})
    record.spans = spans
    return record


def _create_private(path: Path) -> None:
    """Create the folders (0700) and the file (0600) before SQLite does: SQLite would use the umask."""
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):  # `mkdir(parents=True)` gives the parents the umask's mode, not ours
        folder.mkdir(mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class RunStore:
    """A SQLite file of finished run records."""

    def __init__(self, path: Path) -> None:
        try:
            _create_private(path)
        except OSError as exc:
            raise ConfigError(f"run log {path}: cannot create it ({exc.strerror or exc})") from exc
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(f"run log {path}: not a usable SQLite file ({exc})") from exc
        self.path = path
        self._lock = threading.Lock()

    def save(self, record: RunRecord) -> None:
        payload = json.dumps(record.to_dict(), default=str, allow_nan=True)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO runs (run_id, queued_at, record) VALUES (?, ?, ?)",
                (record.run_id, record.queued_at, payload),
            )

    def load_into(self, log: RunLog) -> int:
        """Put the stored records (oldest first) in front of `log`'s; returns how many were loaded."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM runs ORDER BY queued_at, run_id").fetchall()
        stored = [_record_from_json(text) for (text,) in rows]
        known = {r.run_id for r in log}
        fresh = [r for r in stored if r.run_id not in known]
        current = list(log)
        log.clear()
        log.extend(fresh + current)
        return len(fresh)

    def attach(self, log: RunLog) -> Callable[[], None]:
        """Save every record of `log` as it finishes; returns a function that detaches and closes."""
        for record in log:
            if record.done:
                self.save(record)
        detach = log.on_finish(self.save)

        def close() -> None:
            detach()
            with self._lock:
                self._db.close()

        return close
