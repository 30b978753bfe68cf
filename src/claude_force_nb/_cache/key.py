"""The cache key: which requests are "the same question", as a pure function.

`request_key(request)` is the hex SHA-256 of a format-version prefix plus the canonical JSON (sorted keys,
compact separators, `ensure_ascii=False`, UTF-8) of the request's *semantic* part: every field that can change
the model's answer, and nothing else.

In the key, and why:

- `model`, `messages`: obviously decide the answer.
- `system`: the full system prompt, i.e. the agent's definition plus the output contract. The old cache keyed
  on the agent *name*, so editing an agent's definition kept serving answers written for the old one.
- `max_tokens`: a smaller budget truncates the answer (stop_reason "max_tokens"); a larger one must not be
  served a truncated answer recorded under a smaller budget.
- `temperature`, `top_p`, `top_k`: sampling changes the answer's distribution; an answer recorded at 0.0 is
  not a sample at 1.0. `None` (the API default) is kept distinct from any explicit value, because the default
  is the server's to choose and may differ by model.
- `stop_sequences`, `tools`, `tool_choice`, `thinking`: each changes what the model may emit.

Out of the key, and why:

- `cache_system`, `cache_ttl`: Anthropic prompt-caching hints; they change the bill, never the answer. Keying
  on them would make a notebook that turns prompt caching on miss every answer it already has.
- `metadata`: request tagging (e.g. a user id for abuse tracking); the model never sees it.
- Timeouts, retries, agent names: not in `MessageRequest` at all; the agent's *definition* is in `system`.

Numbers are normalised before hashing (`1` and `1.0` are the same temperature, `-0.0` is `0.0`) so that the
same semantics always give the same bytes; NaN and infinity are refused (they have no JSON form).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .._request import ChatMessage, MessageRequest

__all__ = [
    "KEY_FORMAT_VERSION",
    "canonical_json",
    "keyed_request",
    "request_from_semantic",
    "request_key",
    "semantic_request",
]

KEY_FORMAT_VERSION = 1
"""Bumped whenever the semantic form, the canonical encoding or the stored entry format changes: old entries
then simply stop matching and age out, instead of being misread."""

_KEY_PREFIX = f"claude_force_nb/response-cache/v{KEY_FORMAT_VERSION}\n".encode()

_SEMANTIC_FIELDS = frozenset(
    {
        "model",
        "system",
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
    }
)


def _to_json_value(value: object) -> object:
    # Tools and thinking configs are "JSON-like mappings"; callers sometimes pass MappingProxyType or other
    # read-only mappings, which json cannot encode by itself.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cache key: {type(value).__name__} is not JSON-serialisable")


# Built once: `json.dumps(**options)` would build a new JSONEncoder per call (~1 us of a ~8 us key).
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_to_json_value
)


def canonical_json(value: object) -> bytes:
    """The one canonical byte form used for keys and bundle checksums."""
    return _ENCODER.encode(value).encode("utf-8")


def _float(value: float | None) -> float | None:
    # `+ 0.0` turns -0.0 into 0.0; float() makes the int 1 and the float 1.0 encode identically.
    return None if value is None else float(value) + 0.0


def _mapping(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def semantic_request(request: MessageRequest) -> dict[str, Any]:
    """The fields of `request` that decide the answer, as plain JSON data (see the module docstring)."""
    return {
        "model": request.model,
        "system": request.system,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": int(request.max_tokens),
        "temperature": _float(request.temperature),
        "top_p": _float(request.top_p),
        "top_k": None if request.top_k is None else int(request.top_k),
        "stop_sequences": list(request.stop_sequences),
        "tools": [dict(t) for t in request.tools],
        "tool_choice": _mapping(request.tool_choice),
        "thinking": _mapping(request.thinking),
    }


def request_key(request: MessageRequest) -> str:
    """Hex SHA-256 of the versioned canonical semantic request."""
    return keyed_request(request)[0]


def keyed_request(request: MessageRequest) -> tuple[str, bytes]:
    """The key and the canonical JSON it hashes (a write stores the latter, so it is computed once)."""
    canonical = canonical_json(semantic_request(request))
    return hashlib.sha256(_KEY_PREFIX + canonical).hexdigest(), canonical


def _optional_number(data: Mapping[str, Any], name: str) -> float | None:
    value = data[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or null")
    return float(value)


def request_from_semantic(data: object) -> MessageRequest:
    """Rebuild a request from `semantic_request` output (e.g. read from a bundle); strict about shape.

    Raises TypeError/ValueError on anything that `semantic_request` could not have produced, so a bundle
    cannot smuggle extra fields past the key check.
    """
    if not isinstance(data, Mapping) or set(data) != _SEMANTIC_FIELDS:
        raise ValueError(f"a request must be an object with exactly the fields {sorted(_SEMANTIC_FIELDS)}")
    model, system, max_tokens, top_k = data["model"], data["system"], data["max_tokens"], data["top_k"]
    if not isinstance(model, str) or not isinstance(system, str):
        raise TypeError("model and system must be strings")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise ValueError("max_tokens must be a positive integer")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
        raise TypeError("top_k must be an integer or null")
    messages = data["messages"]
    if not isinstance(messages, list):
        raise TypeError("messages must be a list")
    turns = []
    for message in messages:
        if not isinstance(message, Mapping) or set(message) != {"role", "content"}:
            raise ValueError("each message must be an object with exactly role and content")
        role, content = message["role"], message["content"]
        if role not in ("user", "assistant") or not isinstance(content, str):
            raise ValueError("message role must be user/assistant and content a string")
        turns.append(ChatMessage(role=role, content=content))
    stops, tools = data["stop_sequences"], data["tools"]
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise TypeError("stop_sequences must be a list of strings")
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) for t in tools):
        raise TypeError("tools must be a list of objects")
    for name in ("tool_choice", "thinking"):
        if data[name] is not None and not isinstance(data[name], Mapping):
            raise TypeError(f"{name} must be an object or null")
    return MessageRequest(
        model=model,
        system=system,
        messages=tuple(turns),
        max_tokens=max_tokens,
        temperature=_optional_number(data, "temperature"),
        top_p=_optional_number(data, "top_p"),
        top_k=top_k,
        stop_sequences=tuple(stops),
        tools=tuple(tools),
        tool_choice=data["tool_choice"],
        thinking=data["thinking"],
    )
