"""The simulator's token model: deliberately simple and public, so tests can compute exact expectations.

    estimate_tokens(text) = ceil(len(text) / 4)          (0 for "")

    input tokens = sum over tools          of estimate_tokens(compact JSON of the tool, without cache_control)
                 + sum over system blocks  of estimate_tokens(block text)      (a string system is one block)
                 + sum over messages       of MESSAGE_OVERHEAD_TOKENS
                                              + sum over its blocks of estimate_tokens(block text)
                                                                            (string content is one block)

    block text: "text" -> text; "thinking" -> thinking; "tool_use" -> name + compact JSON of input;
                "tool_result" -> its string content, or the texts of its nested blocks; anything else (images,
                documents, ...) -> the compact JSON of the block without cache_control.

Compact JSON is `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`. Output tokens
are `max(1, estimate_tokens(answer text))`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "Breakpoint",
    "PromptTokens",
    "analyze_prompt",
    "block_text",
    "compact_json",
    "count_input_tokens",
    "estimate_tokens",
]

MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """ceil(len(text) / 4): the simulator's tokenizer (0 for the empty string)."""
    return (len(text) + 3) // 4


def compact_json(obj: object) -> str:
    """Canonical compact JSON: how tool definitions and non-text blocks are counted (and hashed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _without_cache_control(block: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


def block_text(block: Mapping[str, Any]) -> str:
    """The text a content block is counted as (see the module docstring)."""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "thinking":
        return str(block.get("thinking", ""))
    if kind == "tool_use":
        return str(block.get("name", "")) + compact_json(block.get("input", {}))
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(block_text(b) for b in content if isinstance(b, Mapping))
    return compact_json(_without_cache_control(block))


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """A cache_control mark: the prefix up to and including the marked block."""

    tokens: int
    digest: bytes
    ttl: str


@dataclass(frozen=True, slots=True)
class PromptTokens:
    """Total input tokens of a request and its cache breakpoints, in prompt order."""

    total: int
    breakpoints: tuple[Breakpoint, ...]


def analyze_prompt(
    tools: Sequence[Mapping[str, Any]],
    system: str | Sequence[Mapping[str, Any]] | None,
    messages: Sequence[Mapping[str, Any]],
    cache_control: Mapping[str, Any] | None = None,
) -> PromptTokens:
    """Count a (validated) request's input tokens and locate its cache breakpoints.

    Parts are visited in the order the real API caches them: tools, then system blocks, then message blocks.
    A top-level `cache_control` marks the last block of the last message. Hashing only happens when some
    block carries cache_control, so plain requests stay cheap.
    """
    # Each part: (tokens, what it hashes as, its cache_control or None).
    parts: list[tuple[int, object, Any]] = []
    for tool in tools:
        parts.append(
            (estimate_tokens(compact_json(_without_cache_control(tool))), tool, tool.get("cache_control"))
        )
    if isinstance(system, str):
        parts.append((estimate_tokens(system), system, None))
    elif system is not None:
        for block in system:
            parts.append((estimate_tokens(block_text(block)), block, block.get("cache_control")))
    for message in messages:
        role = message["role"]
        content = message["content"]
        # The per-message overhead rides on a marker part, so a breakpoint inside a message includes it.
        parts.append((MESSAGE_OVERHEAD_TOKENS, ("message", role), None))
        if isinstance(content, str):
            parts.append((estimate_tokens(content), content, None))
        else:
            for block in content:
                parts.append((estimate_tokens(block_text(block)), block, block.get("cache_control")))

    if cache_control and parts and not parts[-1][2]:
        tokens, source, _ = parts[-1]
        parts[-1] = (tokens, source, cache_control)
    total = sum(p[0] for p in parts)
    if not any(p[2] for p in parts):
        return PromptTokens(total=total, breakpoints=())

    hasher = hashlib.blake2b(digest_size=16)
    running = 0
    breakpoints: list[Breakpoint] = []
    for tokens, source, cache_control in parts:
        running += tokens
        # Hash what the model sees, not the markers: moving a breakpoint must not change the prefix hash.
        shown = _without_cache_control(source) if isinstance(source, Mapping) else source
        hasher.update(compact_json(shown).encode())
        hasher.update(b"\x1e")
        if cache_control:
            ttl = cache_control.get("ttl", "5m")
            breakpoints.append(Breakpoint(tokens=running, digest=hasher.copy().digest(), ttl=ttl))
    return PromptTokens(total=total, breakpoints=tuple(breakpoints))


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens of a Messages request body (a dict as sent on the wire), by the formula above.

    No validation: use it on bodies the API would accept; cache_control does not change the total.
    """
    return analyze_prompt(body.get("tools") or (), body.get("system"), body.get("messages") or ()).total
