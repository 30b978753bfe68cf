"""Faults: what can go wrong with a request, and the schedule that decides which request gets which fault.

Scripted faults come first and are consumed in arrival order, so a test that scripts "the next two requests
whose body contains 'agent-7' get a 429" is deterministic even when many requests are in flight. Probabilistic
faults come from one RNG seeded by `SimConfig.seed` that is drawn exactly once per request, so the n-th
request of a run gets the same fate every time, whatever was scripted around it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final

__all__ = ["DEFAULT_AFTER_TOKENS", "FAULT_KINDS", "Fault", "FaultSchedule", "error_type_for_status"]

FAULT_KINDS: Final = frozenset(
    {"rate_limit", "overloaded", "server_error", "status", "stream_overloaded", "reset", "hang", "malformed"}
)
DEFAULT_AFTER_TOKENS = 8

# The error "type" the real API puts in the body for each status; others fall back by class (4xx / 5xx).
_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for_status(status: int) -> str:
    """The Anthropic error type that fits an HTTP status (e.g. 529 -> "overloaded_error")."""
    found = _ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def _optional_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"Fault {name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Fault:
    """One injected failure; `kind` is one of FAULT_KINDS, the rest refine it (unused fields are ignored)."""

    kind: str
    _: KW_ONLY
    status: int | None = None
    retry_after: float | None = None
    should_retry: bool | None = None
    after_tokens: int | None = None
    hang_s: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {sorted(FAULT_KINDS)}")
        if self.kind == "status":
            if (
                isinstance(self.status, bool)
                or not isinstance(self.status, int)
                or not 400 <= self.status <= 599
            ):
                raise ValueError(f"Fault('status') needs status=<400..599>, got {self.status!r}")
        elif self.status is not None:
            raise ValueError(f"status= only applies to Fault('status'), not {self.kind!r}")
        _optional_seconds("retry_after", self.retry_after)
        _optional_seconds("hang_s", self.hang_s)
        if self.after_tokens is not None and (
            isinstance(self.after_tokens, bool)
            or not isinstance(self.after_tokens, int)
            or self.after_tokens < 0
        ):
            raise ValueError(f"Fault after_tokens must be an int >= 0, got {self.after_tokens!r}")
        if self.should_retry is not None and not isinstance(self.should_retry, bool):
            raise ValueError(f"Fault should_retry must be True, False or None, got {self.should_retry!r}")
        if self.message is not None and not isinstance(self.message, str):
            raise ValueError(f"Fault message must be a string, got {self.message!r}")

    @property
    def status_code(self) -> int | None:
        """The HTTP status the client sees first (None when no response is sent at all)."""
        if self.kind == "status":
            return self.status
        return _KIND_STATUS.get(self.kind)

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, JSON-ready (the wire form of the admin `script` endpoint)."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in ("status", "retry_after", "should_retry", "after_tokens", "hang_s", "message"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Inverse of `to_dict`; raises ValueError for a malformed spec."""
        if not isinstance(data, Mapping) or "kind" not in data:
            raise ValueError(f"a fault spec must be an object with a 'kind', got {data!r}")
        extra = set(data) - {
            "kind",
            "status",
            "retry_after",
            "should_retry",
            "after_tokens",
            "hang_s",
            "message",
        }
        if extra:
            raise ValueError(f"unknown fault field(s) {sorted(extra)}")
        kwargs = {k: v for k, v in data.items() if k != "kind"}
        return cls(str(data["kind"]), **kwargs)


_KIND_STATUS: Final = {
    "rate_limit": 429,
    "overloaded": 529,
    "stream_overloaded": 529,
    "server_error": 500,
    "malformed": 200,
}


@dataclass
class _Scripted:
    fault: Fault
    remaining: int
    match: bytes | None


class FaultSchedule:
    """Picks the fault (or None) for each /v1/messages request. Not thread-safe: the owner holds a lock."""

    def __init__(self, rates: Mapping[str, float], seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        # Cumulative thresholds in sorted-kind order: one uniform draw then picks at most one fault.
        self._thresholds: list[tuple[float, Fault]] = []
        total = 0.0
        for kind in sorted(rates):
            if rates[kind] > 0:
                total += rates[kind]
                self._thresholds.append((total, Fault(kind)))
        self._scripted: list[_Scripted] = []

    def script(self, fault: Fault, times: int, match: str | None) -> None:
        if not isinstance(fault, Fault):
            raise ValueError(f"script() needs a Fault, got {type(fault).__name__}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be an int >= 1, got {times!r}")
        if match is not None and (not isinstance(match, str) or not match):
            raise ValueError(f"match must be a non-empty string or None, got {match!r}")
        self._scripted.append(_Scripted(fault, times, None if match is None else match.encode()))

    @property
    def pending(self) -> int:
        """How many scripted faults are still queued."""
        return sum(s.remaining for s in self._scripted)

    def next_fault(self, body: bytes) -> Fault | None:
        """The fault for a request with this raw body; consumes a scripted entry or one RNG draw."""
        drawn = self._draw() if self._thresholds else None
        for i, entry in enumerate(self._scripted):
            if entry.match is None or entry.match in body:
                entry.remaining -= 1
                if entry.remaining == 0:
                    del self._scripted[i]
                return entry.fault
        return drawn

    def _draw(self) -> Fault | None:
        u = self._rng.random()
        for threshold, fault in self._thresholds:
            if u < threshold:
                return fault
        return None

    def reset(self) -> None:
        """Forget scripted faults and restart the RNG, so a run after reset replays the same fates."""
        self._scripted.clear()
        self._rng = random.Random(self._seed)
