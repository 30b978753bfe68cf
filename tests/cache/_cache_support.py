"""Helpers for the cache tests (importable by spawned worker processes too): requests, a clock, a probe."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from claude_force_nb._request import ChatMessage, Completion, MessageRequest, Usage


class FakeClock:
    """A unix clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_request(task: str = "Summarise the report.", **changes: Any) -> MessageRequest:
    fields: dict[str, Any] = {
        "model": "claude-sonnet-5-5",
        "system": "You are a careful analyst.\n\nAnswer in JSON.",
        "messages": (ChatMessage(role="user", content=task),),
        "max_tokens": 1024,
        "temperature": 0.0,
    }
    fields.update(changes)
    return MessageRequest(**fields)


def make_completion(text: str = "An answer.", **changes: Any) -> Completion:
    fields: dict[str, Any] = {
        "text": text,
        "model": "claude-sonnet-5-5",
        "stop_reason": "end_turn",
        "usage": Usage(input_tokens=120, output_tokens=40),
        "message_id": "msg_test",
    }
    fields.update(changes)
    return Completion(**fields)


class StoreProbe:
    """Direct access to a cache's store, behind the cache's back (as an attacker or a crash would)."""

    def __init__(self, kind: str, *, path: Path | None = None, url: str = "", prefix: str = "") -> None:
        self.kind, self.path, self.url, self.prefix = kind, path, url, prefix

    def values(self) -> dict[str, bytes]:
        """Every stored value, read straight from the store."""
        if self.kind == "disk":
            assert self.path is not None
            with _sqlite(self.path) as con:
                return {k: bytes(v) for k, v in con.execute("SELECT key, value FROM entries")}
        client = self._redis()
        try:
            keys = [k.decode() for k in client.hkeys(self.prefix + "size")]
            values = {k: client.hget(self.prefix + "e:" + k, "v") for k in keys}
            return {k: bytes(v) for k, v in values.items() if v is not None}
        finally:
            client.close()

    def set_value(self, key: str, value: bytes) -> None:
        """Overwrite one entry's stored bytes in place (the SQLite row, or the Redis hash field)."""
        if self.kind == "disk":
            assert self.path is not None
            with _sqlite(self.path) as con:
                assert con.execute("UPDATE entries SET value = ? WHERE key = ?", (value, key)).rowcount == 1
            return
        client = self._redis()
        try:
            client.hset(self.prefix + "e:" + key, "v", value)
        finally:
            client.close()

    def set_field(self, key: str, field: str, value: object) -> None:
        """Hand-edit one bookkeeping column of an entry (agent, model, created, expires, hits)."""
        assert field in ("agent", "model", "created", "last_access", "expires", "hits")
        if self.kind == "disk":
            assert self.path is not None
            with _sqlite(self.path) as con:
                sql = f"UPDATE entries SET {field} = ? WHERE key = ?"
                assert con.execute(sql, (value, key)).rowcount == 1
            return
        client = self._redis()
        try:
            client.hset(self.prefix + "e:" + key, field, value)  # type: ignore[arg-type]
        finally:
            client.close()

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


class _sqlite:
    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(path, isolation_level=None, timeout=30)

    def __enter__(self) -> sqlite3.Connection:
        return self.con

    def __exit__(self, *exc: object) -> None:
        self.con.close()
