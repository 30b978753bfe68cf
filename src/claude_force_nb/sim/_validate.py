"""Request validation: the 400s the real API gives for malformed Messages requests.

Unknown top-level fields are accepted (the SDK sends new ones over time, and the simulator ignores what it
does not model); the fields the simulator reads are checked as strictly as the real API checks them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_CACHE_BREAKPOINTS", "MessagesRequest", "RequestError", "parse_messages_request"]

MAX_CACHE_BREAKPOINTS = 4
_ROLES = frozenset({"user", "assistant"})
_TTLS = frozenset({"5m", "1h"})


class RequestError(Exception):
    """An error response the server should send: status, Anthropic error type, message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _invalid(message: str) -> RequestError:
    return RequestError(400, "invalid_request_error", message)


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """The validated fields of a /v1/messages (or count_tokens) body that the simulator acts on."""

    model: str
    max_tokens: int
    messages: list[dict[str, Any]]
    system: str | list[dict[str, Any]] | None
    temperature: float | None
    stop_sequences: tuple[str, ...]
    stream: bool
    tools: list[dict[str, Any]]
    cache_control: dict[str, Any] | None
    breakpoints: int


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_cache_control(where: str, block: Mapping[str, Any]) -> int:
    cc = block.get("cache_control")
    if cc is None:
        return 0
    if not isinstance(cc, Mapping) or cc.get("type") != "ephemeral":
        raise _invalid(f'{where}.cache_control: must be {{"type": "ephemeral"}} with an optional ttl')
    if cc.get("ttl", "5m") not in _TTLS:
        raise _invalid(f"{where}.cache_control.ttl: must be '5m' or '1h', got {cc.get('ttl')!r}")
    return 1


def _check_block(where: str, block: object) -> int:
    if not isinstance(block, Mapping):
        raise _invalid(f"{where}: content blocks must be objects")
    kind = block.get("type")
    if not isinstance(kind, str) or not kind:
        raise _invalid(f"{where}.type: Field required")
    if kind == "text" and not isinstance(block.get("text"), str):
        raise _invalid(f"{where}.text: Input should be a valid string")
    return _check_cache_control(where, block)


def _check_messages(messages: object) -> int:
    if not isinstance(messages, list):
        raise _invalid("messages: Field required (a list of messages)")
    if not messages:
        raise _invalid("messages: at least one message is required")
    breakpoints = 0
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, Mapping):
            raise _invalid(f"{where}: Input should be an object with role and content")
        if message.get("role") not in _ROLES:
            raise _invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise _invalid(f"{where}.content: Input should be a string or a list of content blocks")
        if not content:
            raise _invalid(f"{where}.content: at least one content block is required")
        for j, block in enumerate(content):
            breakpoints += _check_block(f"{where}.content.{j}", block)
    return breakpoints


def _check_system(system: object) -> int:
    if system is None or isinstance(system, str):
        return 0
    if not isinstance(system, list):
        raise _invalid("system: Input should be a string or a list of text blocks")
    breakpoints = 0
    for j, block in enumerate(system):
        if not isinstance(block, Mapping) or block.get("type") != "text":
            raise _invalid(f"system.{j}: system blocks must be text blocks")
        breakpoints += _check_block(f"system.{j}", block)
    return breakpoints


def _check_tools(tools: object) -> int:
    if tools is None:
        return 0
    if not isinstance(tools, list):
        raise _invalid("tools: Input should be a list")
    breakpoints = 0
    for j, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _invalid(f"tools.{j}.name: Field required")
        breakpoints += _check_cache_control(f"tools.{j}", tool)
    return breakpoints


def _check_sampling(data: Mapping[str, Any]) -> None:
    temperature = data.get("temperature")
    if temperature is not None and (not _is_number(temperature) or not 0.0 <= temperature <= 1.0):
        raise _invalid(f"temperature: Input should be a number between 0 and 1, got {temperature!r}")
    top_p = data.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0.0 <= top_p <= 1.0):
        raise _invalid(f"top_p: Input should be a number between 0 and 1, got {top_p!r}")
    top_k = data.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise _invalid(f"top_k: Input should be a non-negative integer, got {top_k!r}")


def parse_messages_request(data: object, *, count_only: bool = False) -> MessagesRequest:
    """Validate a decoded JSON body; raise RequestError(400, ...) naming the first bad field.

    `count_only` is the count_tokens endpoint, which takes no max_tokens and no sampling options.
    """
    if not isinstance(data, dict):
        raise _invalid("The request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: Field required (a non-empty model id string)")
    max_tokens = data.get("max_tokens")
    if count_only:
        max_tokens = 1
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise _invalid("max_tokens: Field required (an integer >= 0)")
    elif max_tokens < 0:
        # 0 is valid: the real API then only populates the prompt cache ("pre-warming").
        raise _invalid(f"max_tokens: Input should be greater than or equal to 0, got {max_tokens}")
    breakpoints = _check_messages(data.get("messages"))
    breakpoints += _check_system(data.get("system"))
    breakpoints += _check_tools(data.get("tools"))
    # Top-level cache_control marks the last block of the request, as if it were set there.
    breakpoints += _check_cache_control("request", data)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise _invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    stop_sequences: tuple[str, ...] = ()
    stream = False
    if not count_only:
        _check_sampling(data)
        raw_stops = data.get("stop_sequences")
        if raw_stops is not None:
            if not isinstance(raw_stops, list) or not all(isinstance(s, str) and s for s in raw_stops):
                raise _invalid("stop_sequences: Input should be a list of non-empty strings")
            stop_sequences = tuple(raw_stops)
        stream = data.get("stream", False)
        if not isinstance(stream, bool):
            raise _invalid("stream: Input should be a valid boolean")
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens,
        messages=data["messages"],
        system=data.get("system"),
        temperature=data.get("temperature"),
        stop_sequences=stop_sequences,
        stream=stream,
        tools=data.get("tools") or [],
        cache_control=data.get("cache_control"),
        breakpoints=breakpoints,
    )
