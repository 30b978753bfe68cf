"""The cache key: what makes two requests the same question (tested as a table)."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import pytest
from _cache_support import make_request

from claude_force_nb._cache.key import request_from_semantic, request_key, semantic_request
from claude_force_nb._request import ChatMessage

BASE = make_request()

CHANGES_KEY = [
    ("system prompt (agent definition edited)", {"system": "You are a careless analyst.\n\nAnswer in JSON."}),
    ("temperature", {"temperature": 0.7}),
    ("temperature unset vs 0.0", {"temperature": None}),
    ("max_tokens", {"max_tokens": 2048}),
    ("model", {"model": "claude-haiku-5"}),
    ("messages", {"messages": (ChatMessage(role="user", content="Summarise the other report."),)}),
    ("top_p", {"top_p": 0.9}),
    ("top_k", {"top_k": 40}),
    ("stop sequences", {"stop_sequences": ("END",)}),
    ("tools", {"tools": ({"name": "search", "input_schema": {"type": "object"}},)}),
    ("tool_choice", {"tool_choice": {"type": "any"}}),
    ("thinking", {"thinking": {"type": "enabled", "budget_tokens": 2000}}),
]

KEEPS_KEY = [
    ("cache_system (prompt caching hint)", {"cache_system": True}),
    ("cache_ttl (prompt caching hint)", {"cache_system": True, "cache_ttl": "1h"}),
    ("metadata", {"metadata": {"user_id": "u-123"}}),
    ("temperature 0 as int", {"temperature": 0}),
    ("temperature -0.0", {"temperature": -0.0}),
    ("read-only mapping for tool_choice", {"tool_choice": MappingProxyType({"type": "auto"})}),
]


@pytest.mark.parametrize(("what", "changes"), CHANGES_KEY, ids=[c[0] for c in CHANGES_KEY])
def test_semantic_change_changes_key(what: str, changes: dict[str, Any]) -> None:
    """Every field that can change the answer changes the key."""
    assert request_key(make_request(**changes)) != request_key(BASE), what


@pytest.mark.parametrize(("what", "changes"), KEEPS_KEY, ids=[c[0] for c in KEEPS_KEY])
def test_non_semantic_change_keeps_key(what: str, changes: dict[str, Any]) -> None:
    """Billing hints, metadata and numerically equal spellings leave the key alone."""
    if what.startswith("read-only"):
        assert request_key(make_request(**changes)) == request_key(make_request(tool_choice={"type": "auto"}))
    else:
        assert request_key(make_request(**changes)) == request_key(BASE), what


def test_key_is_hex_sha256_and_stable() -> None:
    """The key is 64 lowercase hex chars, and the same for equal requests built separately."""
    key = request_key(BASE)
    assert len(key) == 64
    assert set(key) <= set("0123456789abcdef")
    assert request_key(make_request()) == key


def test_key_is_unicode_safe() -> None:
    """Non-ASCII prompts hash as UTF-8 and differ from their escaped spelling."""
    assert request_key(make_request("Résumé ✓")) != request_key(make_request("R\\u00e9sum\\u00e9 \\u2713"))


def test_nan_temperature_is_refused() -> None:
    """NaN has no JSON form, so it cannot be keyed (rather than silently colliding)."""
    with pytest.raises(ValueError, match="JSON"):
        request_key(make_request(temperature=math.nan))


def test_semantic_round_trip_recomputes_the_same_key() -> None:
    """A request rebuilt from its semantic form (as a bundle carries it) has the same key."""
    request = make_request(
        tools=({"name": "t", "input_schema": {"type": "object"}},), top_k=5, stop_sequences=("x",)
    )
    assert request_key(request_from_semantic(semantic_request(request))) == request_key(request)


@pytest.mark.parametrize(
    "damage",
    [
        {"extra": 1},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"messages": [{"role": "system", "content": "x"}]},
        {"messages": [{"role": "user", "content": 3}]},
        {"temperature": "hot"},
        {"tools": ["not an object"]},
    ],
)
def test_request_from_semantic_is_strict(damage: dict[str, Any]) -> None:
    """A semantic form that `semantic_request` could not have produced is refused."""
    data = {**semantic_request(BASE), **damage}
    with pytest.raises((TypeError, ValueError)):
        request_from_semantic(data)
