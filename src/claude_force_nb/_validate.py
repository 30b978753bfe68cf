"""Checks for the values a user hands the package, as pure functions with one-line errors.

Every public entry point (the orchestrator's constructor, `CallSpec`, `ResponseCache`, `SessionSettings`
behind `%config AgentMagics.*`, budgets and rate limits) checks its arguments with these, so a bad value is
refused where it enters, with a message naming the argument, what it must be and what it got. Without them
`max_concurrent=nan` made every call wait for a slot forever, `max_retries=nan` retried without end and
`timeout_seconds=inf` surfaced as a misleading connection error far from its cause.

Each check returns the value normalised (an `int`, a `float`, a `str`) and raises `ConfigError`, which is
a `ValueError`, so callers that already catch ValueError keep working and the magic turns it into a
one-line `UsageError`.
"""

from __future__ import annotations

import errno
import math
import numbers

from ._exceptions import ConfigError

__all__ = [
    "MAX_PATH_CHARS",
    "check_bool",
    "check_int",
    "check_number",
    "check_path_text",
    "check_text",
    "nesting_place",
    "path_problem",
    "shorten",
]

MAX_PATH_CHARS = 4096
"""Longest path accepted in a setting or a config entry (Linux's PATH_MAX); longer ones cannot be opened."""


def shorten(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters with its full length said, so an error stays one line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[: limit - 1]}…{size}"


def _fail(name: str, must: str, value: object) -> ConfigError:
    return ConfigError(f"{name} must be {must}, got {shorten(value)}")


def check_int(name: str, value: object, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int within [minimum, maximum]; booleans and floats (even 3.0) are refused."""
    bounds = _bounds(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(name, f"an integer{bounds}", value)
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise _fail(name, f"an integer{bounds}", value)
    return number


def check_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    unit: str = "",
) -> float:
    """`value` as a finite float, `>= minimum`, `> above` and `<= maximum` where given.

    NaN and infinities are refused: every comparison with NaN is false, so a NaN limit silently disables
    the check it was meant to configure (a NaN retry count never runs out).
    """
    if minimum is not None and maximum is not None:
        bounds = f" within {minimum:g}..{maximum:g}"
    else:
        lower = f" > {above:g}" if above is not None else f" >= {minimum:g}" if minimum is not None else ""
        bounds = lower + (f" and <= {maximum:g}" if maximum is not None else "")
    must = f"a finite number{f' of {unit}' if unit else ''}{bounds}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, must, value)
    number = float(value)
    if (
        not math.isfinite(number)
        or (minimum is not None and number < minimum)
        or (above is not None and number <= above)
        or (maximum is not None and number > maximum)
    ):
        raise _fail(name, must, value)
    return number


def check_bool(name: str, value: object) -> bool:
    """`value` if it is True or False (not 0/1, not a string: `"False"` is truthy)."""
    if not isinstance(value, bool):
        raise _fail(name, "True or False", value)
    return value


def check_text(name: str, value: object, *, empty_ok: bool = False) -> str:
    """`value` if it is a string (non-blank unless `empty_ok`)."""
    if not isinstance(value, str):
        raise _fail(name, "a string", value)
    if not empty_ok and not value.strip():
        raise _fail(name, "a non-empty string", value)
    return value


def check_path_text(name: str, value: object) -> str:
    """`value` if it is a string usable as a file path: no NUL byte, at most `MAX_PATH_CHARS` characters.

    (The OS refuses both, but as a ValueError or OSError far from the setting that caused it.)
    """
    text = check_text(name, value, empty_ok=True)
    if "\x00" in text:
        raise ConfigError(f"{name} contains a NUL byte, which no file path can hold: {shorten(text)}")
    if len(text) > MAX_PATH_CHARS:
        raise ConfigError(
            f"{name} is {len(text)} characters long, above the {MAX_PATH_CHARS} a path can have: "
            f"{shorten(text)}"
        )
    return text


def path_problem(exc: BaseException) -> str:
    """What went wrong resolving or opening a path, in a few words (for errors that name the file)."""
    if isinstance(exc, RuntimeError):  # pathlib's "Symlink loop from ..." (Python < 3.13)
        return "it is a symlink loop"
    if isinstance(exc, ValueError):
        return "it contains a NUL byte"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "it is a symlink loop"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def nesting_place(text: str, limit: int = 100) -> tuple[int, int] | None:
    """(line, column), both from 1, where JSON `text` first nests deeper than `limit` arrays/objects.

    For the error after `json.loads` gave up with a RecursionError, which says neither where nor why; a
    scan of brackets outside strings answers both without recursing.
    """
    depth = 0
    line, column = 1, 0
    in_string = escaped = False
    for char in text:
        column += 1
        if char == "\n":
            line, column = line + 1, 0
        elif in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return line, column
        elif char in "]}":
            depth -= 1
    return None


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" within {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
