"""The signed entry format: what is verified before anything is decoded."""

from __future__ import annotations

import math

import pytest
from _cache_support import make_completion

from claude_force_nb._cache.entry import (
    MAC_BYTES,
    CorruptEntryError,
    check_cacheable,
    decode_entry,
    decode_request,
    encode_entry,
    mac_ok,
)

KEY = "ab" * 32
OTHER_KEY = "cd" * 32
SECRET = b"local-secret"


def _value(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "completion": make_completion("hello"),
        "agent": "analyst",
        "model": "claude-sonnet-5-5",
        "created_at": 100.0,
        "expires_at": 200.0,
        "cost_usd": 0.25,
        "latency_s": 3.5,
        "request_json": b'{"model":"m"}',
    }
    fields.update(changes)
    return encode_entry(SECRET, KEY, **fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    """An entry decodes to the same answer, cost, latency, agent and expiry, and keeps its request."""
    decoded = decode_entry(SECRET, KEY, _value())
    assert decoded.hit.completion == make_completion("hello")
    assert (decoded.hit.cost_usd, decoded.hit.latency_s, decoded.hit.agent) == (0.25, 3.5, "analyst")
    assert (decoded.hit.created_at, decoded.expires_at, decoded.model) == (100.0, 200.0, "claude-sonnet-5-5")
    assert decode_request(_value()) == {"model": "m"}


def test_unpriced_cost_survives_as_nan() -> None:
    """An unpriced model's NaN cost is stored as null and read back as NaN."""
    assert math.isnan(decode_entry(SECRET, KEY, _value(cost_usd=math.nan)).hit.cost_usd)


@pytest.mark.parametrize(
    ("what", "damage"),
    [
        ("flipped payload byte", lambda v: v[:-5] + bytes([v[-5] ^ 1]) + v[-4:]),
        ("flipped MAC byte", lambda v: bytes([v[0] ^ 1]) + v[1:]),
        ("truncated", lambda v: v[: len(v) // 2]),
        ("MAC only", lambda v: v[:MAC_BYTES]),
        ("empty", lambda v: b""),
    ],
)
def test_damaged_values_are_refused(what: str, damage: object) -> None:
    """Any change to the stored bytes fails the MAC check."""
    bad = damage(_value())  # type: ignore[operator]
    assert not mac_ok(SECRET, KEY, bad), what
    with pytest.raises(CorruptEntryError):
        decode_entry(SECRET, KEY, bad)


def test_foreign_secret_and_moved_key_are_refused() -> None:
    """A value signed with another secret, or copied under another key, is refused."""
    with pytest.raises(CorruptEntryError, match="signature"):
        decode_entry(b"someone-else", KEY, _value())
    with pytest.raises(CorruptEntryError, match="signature"):
        decode_entry(SECRET, OTHER_KEY, _value())


def test_unverified_mode_still_refuses_garbage() -> None:
    """verify=False skips the MAC, not the format checks."""
    with pytest.raises(CorruptEntryError):
        decode_entry(SECRET, KEY, b"x" * MAC_BYTES + b"not json\n{}", verify=False)
    assert decode_entry(b"wrong", KEY, _value(), verify=False).hit.agent == "analyst"


@pytest.mark.parametrize(
    ("completion", "cost", "latency"),
    [
        (make_completion(stop_reason=None), 0.1, 1.0),
        (make_completion(), -0.1, 1.0),
        (make_completion(), math.inf, 1.0),
        (make_completion(), 0.1, math.nan),
        (make_completion(), 0.1, -1.0),
    ],
)
def test_check_cacheable_refuses(completion: object, cost: float, latency: float) -> None:
    """Unfinished answers and nonsense costs/latencies are never stored."""
    with pytest.raises(ValueError, match=r"must|only"):
        check_cacheable(completion, cost, latency)  # type: ignore[arg-type]


def test_check_cacheable_accepts_unpriced() -> None:
    """NaN cost (an unpriced model) is a legitimate answer to cache."""
    check_cacheable(make_completion(), math.nan, 0.5)
