"""The stored form of one cache entry, its signature, and what a hit hands back.

A stored value is ``HMAC-SHA256(secret, key + payload) + payload`` and its *size* (the "bytes" of every byte
count in this package) is ``len(value)``: 32 bytes of MAC plus the payload. Store overheads (SQLite pages,
Redis bookkeeping) are not counted; they are not ours to bound exactly, the values are.

The payload is three parts joined by newlines: a small JSON *header* (agent, times, cost, and
`Completion.to_dict()` minus the text), the semantic request as canonical JSON, and the answer text as raw
UTF-8. Compact JSON never contains a raw newline (string newlines are escaped), so the first two newlines are
unambiguous and the text, last, may contain any. Why not one JSON document: a hit then parses only the small
header; the system prompt (kept so a replay bundle can carry it and the key can be recomputed on import) is
never parsed, and the answer is one `bytes.decode` instead of a JSON string scan, which halves decode time
for a 2 KB answer (measured: `json.loads` of a 2.4 KB header ~4.6 us vs ~1 us without the text).

The MAC covers the key too, so a value copied under another key (or a foreign cache's value) fails the check.
It is checked with `hmac.compare_digest` *before* anything is decoded: a tampered payload never reaches
`json.loads`. Nothing is ever pickled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any

from .._request import Completion
from .key import KEY_FORMAT_VERSION, canonical_json

__all__ = [
    "MAC_BYTES",
    "CacheHit",
    "CorruptEntryError",
    "DecodedEntry",
    "check_cacheable",
    "decode_entry",
    "decode_request",
    "encode_entry",
    "mac_ok",
]

MAC_BYTES = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheHit:
    """A served answer. `cost_usd` and `latency_s` are what the original call cost and took: the saving.

    `cost_usd` is NaN when the original model was unpriced. A hit itself costs nothing.
    """

    key: str
    completion: Completion
    cost_usd: float
    latency_s: float
    created_at: float
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedEntry:
    """A verified entry: the hit plus the bookkeeping the tiers need."""

    hit: CacheHit
    model: str
    expires_at: float


class CorruptEntryError(ValueError):
    """A stored value that must not be served: bad MAC, truncated, or not a payload we wrote."""


def check_cacheable(completion: Completion, cost_usd: float, latency_s: float) -> None:
    """Raise ValueError unless this is a finished answer with a sane cost and latency.

    Only successful completions are cached (an error or a cut stream must never be replayed as an answer);
    the orchestrator already guarantees that, this is the second line. NaN cost means "unpriced model".
    """
    if not isinstance(completion.text, str) or not isinstance(completion.stop_reason, str):
        raise ValueError("only finished completions (text str, stop_reason set) are cached")
    if not (math.isnan(cost_usd) or (math.isfinite(cost_usd) and cost_usd >= 0)):
        raise ValueError(f"cost_usd must be >= 0 or NaN (unpriced), got {cost_usd!r}")
    if not (math.isfinite(latency_s) and latency_s >= 0):
        raise ValueError(f"latency_s must be a finite number >= 0, got {latency_s!r}")


def _mac(secret: bytes, key: str, payload: bytes) -> bytes:
    return hmac.digest(secret, key.encode("ascii") + payload, hashlib.sha256)


def encode_entry(
    secret: bytes,
    key: str,
    *,
    completion: Completion,
    agent: str,
    model: str,
    created_at: float,
    expires_at: float,
    cost_usd: float,
    latency_s: float,
    request_json: bytes,
) -> bytes:
    """Sign and serialise one entry (see the module docstring for the layout)."""
    answer = completion.to_dict()
    text = answer.pop("text")
    header = {
        "v": KEY_FORMAT_VERSION,
        "agent": agent,
        "model": model,
        "created_at": created_at,
        "expires_at": expires_at,
        "cost_usd": None if math.isnan(cost_usd) else cost_usd,
        "latency_s": latency_s,
        "completion": answer,
    }
    payload = b"\n".join((canonical_json(header), request_json, text.encode("utf-8")))
    return _mac(secret, key, payload) + payload


def mac_ok(secret: bytes, key: str, value: bytes) -> bool:
    """Constant-time check of the value's MAC (False for anything too short to hold one)."""
    if len(value) <= MAC_BYTES:
        return False
    return hmac.compare_digest(value[:MAC_BYTES], _mac(secret, key, value[MAC_BYTES:]))


def _number(header: dict[str, Any], name: str, *, nullable: bool = False) -> float:
    value = header.get(name)
    if value is None and nullable:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CorruptEntryError(f"entry field {name} is not a finite number")
    return float(value)


def decode_entry(secret: bytes, key: str, value: bytes, *, verify: bool = True) -> DecodedEntry:
    """Verify (unless `verify` is False) and decode a stored value; CorruptEntryError if not servable."""
    if verify and not mac_ok(secret, key, value):
        raise CorruptEntryError("signature mismatch (tampered, truncated or written under another secret)")
    end = value.find(b"\n", MAC_BYTES)
    text_start = value.find(b"\n", end + 1) + 1 if end >= 0 else 0
    if text_start <= 0:
        raise CorruptEntryError("missing header/request/text separators")
    try:
        header = json.loads(value[MAC_BYTES:end])
        if not isinstance(header, dict) or header.get("v") != KEY_FORMAT_VERSION:
            raise CorruptEntryError("unknown entry format")
        agent, model, answer = header.get("agent"), header.get("model"), header.get("completion")
        if not isinstance(agent, str) or not isinstance(model, str) or not isinstance(answer, dict):
            raise CorruptEntryError("entry agent/model/completion have the wrong types")
        answer["text"] = value[text_start:].decode("utf-8")
        completion = Completion.from_dict(answer)
    except CorruptEntryError:
        raise
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise CorruptEntryError(f"undecodable entry: {exc}") from exc
    if completion.stop_reason is None:
        raise CorruptEntryError("entry is not a finished completion")
    hit = CacheHit(
        key=key,
        completion=completion,
        cost_usd=_number(header, "cost_usd", nullable=True),
        latency_s=_number(header, "latency_s"),
        created_at=_number(header, "created_at"),
        agent=agent,
    )
    return DecodedEntry(hit=hit, model=model, expires_at=_number(header, "expires_at"))


def decode_request(value: bytes) -> Any:
    """The semantic request stored in a value (call only on a value that `decode_entry` accepted)."""
    start = value.find(b"\n", MAC_BYTES) + 1
    end = value.find(b"\n", start)
    try:
        return json.loads(value[start:end])
    except ValueError as exc:
        raise CorruptEntryError(f"undecodable request: {exc}") from exc
