"""Retry decisions, as pure functions.

Retries live in exactly one layer, the orchestrator; the SDK client is built with `max_retries=0`. These
functions hold the whole policy so it can be read in one screen and tested as a table:

- `is_retryable_status`: which API answers are worth another attempt.
- `parse_retry_after`: the wait a server asked for, from `retry-after-ms` / `retry-after` headers.
- `backoff_delay`: how long to wait before retry number *n*.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_BASE_DELAY_S",
    "DEFAULT_MAX_DELAY_S",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_AFTER_S",
    "NEVER_RETRY_STATUSES",
    "RetryPolicy",
    "backoff_delay",
    "is_retryable_status",
    "parse_retry_after",
]

DEFAULT_MAX_RETRIES = 3
DEFAULT_BASE_DELAY_S = 0.5
DEFAULT_MAX_DELAY_S = 8.0
DEFAULT_MAX_RETRY_AFTER_S = 60.0
DEFAULT_JITTER = 0.25

NEVER_RETRY_STATUSES = frozenset({400, 401, 403, 404, 413})
"""Errors no retry can fix (bad request, auth, missing model, too large). Not even `x-should-retry: true`
changes this: a retry would cost a request and give the same answer."""

_RETRY_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How many retries, and how long to wait between them.

    `max_retries` counts retries after the first attempt. Exponential backoff starts at `base_delay_s`,
    doubles per retry, is capped at `max_delay_s`, and loses up to `jitter` of itself at random so a crowd
    of failed calls does not retry in lockstep. A server's `retry-after` replaces the backoff, capped at
    `max_retry_after_s` so a bogus header cannot park a notebook for an hour.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay_s: float = DEFAULT_BASE_DELAY_S
    max_delay_s: float = DEFAULT_MAX_DELAY_S
    jitter: float = DEFAULT_JITTER
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S

    def __post_init__(self) -> None:
        # Imported here: _validate needs _exceptions, which imports this module. A NaN retry count would
        # never run out (`retries >= nan` is always false), so every field must be a finite number.
        from ._validate import check_int, check_number

        check_int("max_retries", self.max_retries, minimum=0)
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            check_number(name, getattr(self, name), minimum=0.0, unit="seconds")
        check_number("jitter", self.jitter, minimum=0.0, maximum=1.0)


def is_retryable_status(
    status: int | None, *, error_type: str | None = None, should_retry: bool | None = None
) -> bool:
    """Whether an API error answer is worth retrying.

    Retried: 408, 409, 429, every 5xx (529 overloaded included), and an `overloaded_error` event inside a
    stream (which arrives on a 200). Never retried: `NEVER_RETRY_STATUSES`. Otherwise the server's
    `x-should-retry` header, when present, decides.
    """
    if status in NEVER_RETRY_STATUSES:
        return False
    if should_retry is not None:
        return should_retry
    if error_type in ("overloaded_error", "rate_limit_error", "api_error", "timeout_error"):
        return True
    if status is None:
        return False
    return status in _RETRY_STATUSES or status >= 500


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the server asked us to wait, or None.

    `retry-after-ms` (milliseconds, non-standard but precise) wins over `retry-after`, which may be seconds
    (integer or float) or an HTTP date. `now` is the current Unix time, for the date form. Negative or
    unparsable values mean "no advice".
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        seconds = float(email.utils.mktime_tz(parsed)) - now
    return seconds if seconds >= 0 else None


def backoff_delay(retry_index: int, policy: RetryPolicy, *, retry_after: float | None, rand: float) -> float:
    """Seconds to wait before retry number `retry_index` (0 for the first retry).

    `rand` is a uniform draw in [0, 1) supplied by the caller, so this stays a pure function.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.max_retry_after_s)
    exponent = min(retry_index, 60)  # 2**60 is already past any cap; avoid float overflow
    delay = min(policy.base_delay_s * (2.0**exponent), policy.max_delay_s)
    return delay * (1.0 - policy.jitter * rand)
