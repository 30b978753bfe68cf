"""Constants and tiny builders shared by the simulator tests (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

API_KEY = "sk-sim-test"
MODEL = "claude-sim-test"


def user(text: str) -> list[dict[str, Any]]:
    """A one-message conversation, the most common request body in these tests."""
    return [{"role": "user", "content": text}]


def body(text: str, **fields: Any) -> dict[str, Any]:
    """A complete /v1/messages JSON body for raw HTTP tests."""
    return {"model": MODEL, "max_tokens": fields.pop("max_tokens", 50), "messages": user(text), **fields}
