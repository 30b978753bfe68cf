"""The Messages API wire format: ids, usage blocks, message bodies, error bodies and SSE events.

Everything here returns ready-to-send bytes or JSON-ready dicts; the server only decides which to send when.
The constant SSE events are encoded once at import, since they are identical for every stream.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CONTENT_BLOCK_START",
    "CONTENT_BLOCK_STOP",
    "MESSAGE_STOP",
    "PING",
    "Usage",
    "dumps",
    "error_body",
    "message_body",
    "message_delta_event",
    "message_start_event",
    "new_id",
    "sse",
    "stream_error_event",
    "text_delta_event",
]

# Ids only need to be unique, not secret: a random per-process base plus a counter costs no syscall.
_ID_BASE: Final = os.urandom(5).hex()
_counter = itertools.count(1)

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(obj: object) -> str:
    """Compact JSON, as the server sends it."""
    return _encoder.encode(obj)


def new_id(prefix: str) -> str:
    """A unique id such as "msg_sim0a1b2c3d4e0000000001"; `prefix` is "msg" or "req"."""
    return f"{prefix}_sim{_ID_BASE}{next(_counter):010x}"


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one response, split the way the real API splits it."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    def to_dict(self, *, output_tokens: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m_tokens,
                "ephemeral_1h_input_tokens": self.cache_write_1h_tokens,
            },
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "service_tier": "standard",
        }


def message_body(
    *,
    message_id: str,
    model: str,
    text: str | None,
    stop_reason: str | None,
    stop_sequence: str | None,
    usage: Usage,
) -> dict[str, Any]:
    """A complete non-streaming Message; `text=None` gives empty content (a max_tokens=0 cache pre-warm)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [] if text is None else [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage.to_dict(),
    }


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    """The JSON error envelope: {"type": "error", "error": {...}, "request_id": ...}."""
    return dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    ).encode()


def sse(event: str, data: str) -> bytes:
    """One server-sent event: an `event:` line, a `data:` line and the blank line that ends it."""
    return f"event: {event}\ndata: {data}\n\n".encode()


def message_start_event(*, message_id: str, model: str, usage: Usage) -> bytes:
    # As the real API: empty content, no stop reason yet, and output_tokens 1 until message_delta.
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage.to_dict(output_tokens=1),
    }
    return sse("message_start", dumps({"type": "message_start", "message": message}))


CONTENT_BLOCK_START: Final = sse(
    "content_block_start",
    dumps({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
)
PING: Final = sse("ping", dumps({"type": "ping"}))
CONTENT_BLOCK_STOP: Final = sse("content_block_stop", dumps({"type": "content_block_stop", "index": 0}))
MESSAGE_STOP: Final = sse("message_stop", dumps({"type": "message_stop"}))

_DELTA_HEAD: Final = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'


def text_delta_event(chunk: str) -> bytes:
    # Hand-assembled around one json-encoded string: this is the per-chunk hot path of every stream.
    return sse("content_block_delta", _DELTA_HEAD + _encoder.encode(chunk) + "}}")


def message_delta_event(*, stop_reason: str, stop_sequence: str | None, usage: Usage) -> bytes:
    # Usage here is cumulative: the final output count plus the input and cache fields, as the real API sends.
    delta_usage = {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }
    data = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": delta_usage,
    }
    return sse("message_delta", dumps(data))


def stream_error_event(error_type: str, message: str) -> bytes:
    return sse("error", dumps({"type": "error", "error": {"type": error_type, "message": message}}))
