"""Pure parsing for the magics: the capture prefix, agent lists, `{{name}}` templates, `--inputs` rows and
the `%agent` line's sub-commands. No IPython here: `_magic.py` declares the options with
`@magic_arguments` and turns `MagicInputError` into IPython's `UsageError`.

Templating is deliberately small. Only `{{name}}` and `{{name.attr}}` are replaced, from the user's
namespace; `{x}`, `$x`, `{{ not an identifier }}` and everything else stay exactly as typed, so prompts
holding code, JSON or f-strings survive (the magic is `@no_var_expand`: IPython does not touch them either).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._agents import AGENT_NAME_PATTERN

__all__ = [
    "FORMATS",
    "Capture",
    "LineCommand",
    "MagicInputError",
    "parse_agent_list",
    "parse_dollars",
    "parse_line",
    "render_template",
    "rows_from_inputs",
    "split_capture",
    "to_prompt_text",
    "unquote",
]

FORMATS = ("markdown", "markdown+math", "text", "json", "code")

_CAPTURE = re.compile(r"\s*(?P<var>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<show>=)?\s*<<\s*(?P<rest>.*)", re.S)
# {{name}}, {{name.attr}} and an integer subscript on the root: {{In[3]}}, {{Out[3]}} (jupyter-ai's {In[3]})
_TEMPLATE = re.compile(
    r"\{\{\s*(?P<name>(?P<root>[A-Za-z_][A-Za-z0-9_]*)(?:\[\s*(?P<index>-?\d+)\s*\])?"
    r"(?P<attrs>(?:\.[A-Za-z_][A-Za-z0-9_]*)*))\s*\}\}"
)


class MagicInputError(ValueError):
    """Something the user typed in a magic cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Capture:
    """`result << rest` stores into `result`; `result= << rest` stores and shows; otherwise nothing."""

    variable: str | None
    show: bool
    rest: str


def unquote(value: str | None) -> str | None:
    """Strip one pair of matching quotes: IPython's argument splitter keeps them (`--system "Be terse."`)."""
    if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def split_capture(line: str) -> Capture:
    """Split jupysql-style capture syntax off the front of a magic line."""
    match = _CAPTURE.fullmatch(line)
    if match is None:
        return Capture(None, True, line)
    return Capture(match["var"], bool(match["show"]), match["rest"])


def parse_agent_list(spec: str) -> tuple[str, ...]:
    """`a,b , c` -> ("a", "b", "c"); every name must be a valid agent name, none repeated."""
    names = tuple(part.strip() for part in spec.split(","))
    for name in names:
        if not AGENT_NAME_PATTERN.match(name):
            raise MagicInputError(
                f"{name!r} is not an agent name: use letters, digits, '-' and '_' (several: a,b,c)"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MagicInputError(f"agent {duplicates[0]!r} is listed twice")
    return names


def to_prompt_text(value: object) -> str:
    """How a value is written into a prompt: text as is, frames as CSV, containers as JSON."""
    if isinstance(value, str):
        return value
    to_csv = getattr(value, "to_csv", None)
    if callable(to_csv) and hasattr(value, "columns"):
        return str(to_csv(index=False)).rstrip("\n")
    if isinstance(value, (Mapping, list, tuple)):
        try:
            return json.dumps(value, indent=2, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def render_template(text: str, lookup: Callable[[str], Any], *, max_chars: int | None = None) -> str:
    """Replace each `{{name}}` / `{{name.attr}}` with `to_prompt_text` of its value.

    `lookup(name)` returns the value of a root name or raises KeyError; an unknown name or attribute raises
    MagicInputError naming it. A value whose text is longer than `max_chars` raises MagicInputError with
    its size and how to pass less: a whole DataFrame written into a prompt by mistake would otherwise be
    sent, and billed, silently.
    """

    def replace(match: re.Match[str]) -> str:
        path = [match["root"], *match["attrs"].split(".")[1:]]
        try:
            value = lookup(path[0])
        except KeyError:
            raise MagicInputError(
                f"{{{{{path[0]}}}}} is not defined: assign {path[0]} in a cell first, or remove the braces"
            ) from None
        if match["index"] is not None:
            value = _subscript(value, match["root"], int(match["index"]))
        for attribute in path[1:]:
            try:
                value = getattr(value, attribute)
            except AttributeError:
                raise MagicInputError(
                    f"{{{{{match['name']}}}}}: {path[0]} has no attribute {attribute!r}"
                ) from None
            except Exception as exc:  # a property that raises: say so, in one line
                raise MagicInputError(f"{{{{{match['name']}}}}}: reading it failed: {exc!r}") from None
        try:
            expanded = to_prompt_text(value)
        except Exception as exc:
            raise MagicInputError(f"{{{{{match['name']}}}}} could not be written as text: {exc!r}") from None
        if max_chars is not None and len(expanded) > max_chars:
            raise MagicInputError(_too_long(match["name"], value, len(expanded), max_chars))
        return expanded

    return _TEMPLATE.sub(replace, text)


def _too_long(name: str, value: object, size: int, limit: int) -> str:
    shape = getattr(value, "shape", None)
    what = f"a {type(value).__name__} of shape {tuple(shape)}" if shape is not None else type(value).__name__
    if hasattr(value, "head"):  # a DataFrame or Series
        how = f'`small = {name}.head(20)`, one column `{name}["col"]` or a summary `{name}.describe()`'
    else:
        how = f"a part `small = {name}[:1000]` or a summary of it"
    return (
        f"{{{{{name}}}}} expands to {size:,} characters ({what}), above max_template_chars={limit:,} "
        f"(about {limit // 4:,} tokens): pass less, e.g. {how}, then use {{{{small}}}}; or raise the "
        "limit with %config AgentMagics.max_template_chars = N"
    )


def _subscript(value: Any, root: str, index: int) -> Any:
    """`value[index]` for `{{In[3]}}` / `{{Out[3]}}` (IPython's input list and output dict)."""
    try:
        return value[index]
    except (KeyError, IndexError):
        why = f"cell {index} has no output" if root == "Out" else f"{root} has no item {index}"
        raise MagicInputError(f"{{{{{root}[{index}]}}}}: {why}") from None
    except TypeError:
        raise MagicInputError(f"{{{{{root}[{index}]}}}}: {root} cannot be indexed") from None


def rows_from_inputs(value: object, *, name: str) -> list[dict[str, Any]]:
    """The rows of an `--inputs` value: a DataFrame or a list of dicts (each row's keys fill `{{column}}`)."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and hasattr(value, "columns"):
        rows = to_dict(orient="records")
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        rows = list(value)
    else:
        raise MagicInputError(
            f"--inputs {name}: expected a DataFrame or a list of dicts, got {type(value).__name__}"
        )
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise MagicInputError(f"--inputs {name}: row {i} is a {type(row).__name__}, not a dict")
    if not rows:
        raise MagicInputError(f"--inputs {name} has no rows")
    return [{str(k): v for k, v in row.items()} for row in rows]


# -- the %agent line magic -----------------------------------------------------------------------------

_PLOTS = ("latency", "cost", "cache", "timeline")
_THEMES = ("auto", "light", "dark")
LINE_USAGE = """\
%agent list                      agents and workflows
%agent runs [N|last|ID]          the session's run log as a DataFrame (or one cell's rows: In[N], the last)
%agent models                    models with today's prices, status, retirement dates and sources
%agent stats                     response-cache statistics
%agent cache info|clear          the cache's entries / remove the entries this cache wrote
%agent cache export PATH         write a replay bundle
%agent cache import PATH         load a replay bundle
%agent cache replay on|off       serve only from the cache (no API calls)
%agent plot latency|cost|cache|timeline [light|dark]   (default: transparent, fits either theme)
%agent panel                     the interactive panel
%agent config                    the current settings
%agent budget [USD|off]          show or set the session budget
%agent chat reset NAME           forget a --chat conversation
%agent batches                   Message Batches jobs (this machine's registry) with live status
%agent batch status|cancel|collect ID
                                 one batch job: its counts / cancel it / collect its results
%agent help                      this text"""


@dataclass(frozen=True)
class LineCommand:
    """A parsed `%agent` line: the sub-command and its arguments."""

    name: str
    args: tuple[str, ...] = ()


def _usage_error(message: str) -> MagicInputError:
    return MagicInputError(f"{message}\n\n{LINE_USAGE}")


def parse_line(line: str) -> LineCommand:
    """Parse a `%agent ...` line into a LineCommand, or raise MagicInputError with the usage text."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise _usage_error(f"cannot parse %agent {line!r}: {exc}") from None
    if not words:
        return LineCommand("help")
    head, rest = words[0].lower(), tuple(words[1:])
    if head == "runs":
        if len(rest) > 1:
            raise _usage_error("%agent runs takes at most one cell: a number (In[N]), `last`, or a batch id")
        return LineCommand("runs", rest)
    simple = {"list", "models", "stats", "panel", "config", "help", "batches"}
    if head in simple:
        if rest:
            raise _usage_error(f"%agent {head} takes no arguments")
        return LineCommand(head)
    if head == "plot":
        if not 1 <= len(rest) <= 2 or rest[0] not in _PLOTS:
            raise _usage_error(f"%agent plot needs one of: {', '.join(_PLOTS)}")
        if len(rest) == 2 and rest[1] not in _THEMES:
            raise _usage_error(f"%agent plot {rest[0]} {rest[1]}: the theme is one of {', '.join(_THEMES)}")
        return LineCommand("plot", rest)
    if head == "budget":
        if len(rest) > 1:
            raise _usage_error("%agent budget takes one amount in dollars, or 'off'")
        if rest and rest[0].lower() != "off":
            parse_dollars(rest[0])
        return LineCommand("budget", rest)
    if head == "chat":
        if len(rest) != 2 or rest[0] != "reset":
            raise _usage_error("%agent chat reset NAME")
        return LineCommand("chat", rest)
    if head == "cache":
        return LineCommand("cache", _parse_cache_args(rest))
    if head == "batch":
        if len(rest) != 2 or rest[0].lower() not in ("status", "cancel", "collect"):
            raise _usage_error("%agent batch status|cancel|collect ID")
        return LineCommand("batch", (rest[0].lower(), rest[1]))
    raise _usage_error(f"unknown %agent command {words[0]!r}")


def _parse_cache_args(rest: tuple[str, ...]) -> tuple[str, ...]:
    if not rest:
        return ("info",)
    action = rest[0].lower()
    if action in ("info", "clear") and len(rest) == 1:
        return (action,)
    if action in ("export", "import") and len(rest) == 2:
        return (action, rest[1])
    if action == "replay" and len(rest) == 2 and rest[1].lower() in ("on", "off"):
        return (action, rest[1].lower())
    raise _usage_error(f"%agent cache {' '.join(rest)}: not understood")


def parse_dollars(text: str) -> float:
    """A dollar amount such as `2`, `0.5` or `$1.25`."""
    try:
        value = float(text.lstrip("$"))
    except ValueError:
        raise _usage_error(f"{text!r} is not an amount in dollars") from None
    if not value >= 0 or value == float("inf"):
        raise _usage_error(f"a budget must be a non-negative amount, got {text!r}")
    return value
