"""How our output looks, defined once: the status palette, and math-safe Markdown and HTML.

Imported by the display code (tables, streams, results) and by the charts, so a status has one colour
everywhere. Pure string work: no IPython, matplotlib or pandas here.

**Why math-safety needs two guards.** JupyterLab typesets `$…$` (and `\\(…\\)`, `$$…$$`, `\\begin{…}`)
as LaTeX in Markdown *and* HTML outputs, so a line with two dollar amounts ("$0.0020 … $0.0017") turns
into italic maths. A backslash (`\\$`) is not enough there: the Markdown renderer turns it back into `$`
before MathJax scans the page, and MathJax then finds the pair again (checked in a browser,
tests/test_browser.py). What works is an element with the class `mathjax_ignore` (MathJax 3;
`tex2jax_ignore` for MathJax 2) around the text. Renderers that typeset the Markdown *source* instead
(VS Code's KaTeX, GitHub) never see that class, so the source also escapes `$` as `\\$`, which every
CommonMark renderer shows as a plain `$`. Code spans and fenced blocks are left as they are: no renderer
typesets them, and a backslash there would be shown.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

__all__ = [
    "MATH_IGNORE",
    "STATUS_COLOURS",
    "escape_markdown_math",
    "math_safe_html",
    "math_safe_markdown",
    "small_note",
    "status_badge",
]

# One colour per status, from the Okabe-Ito palette (distinguishable with the common colour-vision
# deficiencies). Saturated enough to read on a white and on a dark background; text next to a colour is
# drawn in the theme's own text colour, the colour only marks it.
STATUS_COLOURS: dict[str, str] = {
    "succeeded": "#009E73",  # bluish green: done, paid for
    "cached": "#0072B2",  # blue: served from the cache
    "failed": "#D55E00",  # vermillion
    "refused": "#CC79A7",  # reddish purple: never sent (budget, replay miss)
    "retrying": "#E69F00",  # orange: a failed attempt that will be retried
    "running": "#56B4E9",  # sky blue
    "cancelled": "#999999",
    "queued": "#BBBBBB",
}

MATH_IGNORE = "mathjax_ignore tex2jax_ignore"

_FENCE = re.compile(
    r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}(?P=fence)[`~]*[ \t]*$|\Z)", re.M | re.S
)
_SPAN = re.compile(r"(?<!`)(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)", re.S)
_DOLLAR = re.compile(r"(\\*)\$")


def _escape_dollars(text: str) -> str:
    # a `$` after an odd number of backslashes is already escaped; otherwise add one backslash
    return _DOLLAR.sub(lambda m: m[0] if len(m[1]) % 2 else m[1] + "\\$", text)


def _outside(pattern: re.Pattern[str], text: str, transform: Callable[[str], str]) -> str:
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(text):
        pieces += [transform(text[last : match.start()]), match[0]]
        last = match.end()
    pieces.append(transform(text[last:]))
    return "".join(pieces)


def escape_markdown_math(text: str) -> str:
    """`text` with every unescaped `$` outside code spans and fenced blocks written as `\\$`."""
    return _outside(_FENCE, text, lambda part: _outside(_SPAN, part, _escape_dollars))


def math_safe_markdown(text: str) -> str:
    """Markdown that renders as typed, dollars included, in JupyterLab, VS Code and on GitHub.

    The escaped text inside a `<div class="mathjax_ignore">`; the blank lines keep it Markdown (CommonMark
    ends an HTML block at a blank line).
    """
    return f'<div class="{MATH_IGNORE}">\n\n{escape_markdown_math(text)}\n\n</div>'


def math_safe_html(fragment: str) -> str:
    """An HTML fragment (already escaped by its maker) that MathJax leaves alone."""
    return f'<div class="{MATH_IGNORE}">{fragment}</div>'


def small_note(text: str) -> str:
    """A one-line note under an answer (`<small>`), safe in Markdown and HTML: escaped, never typeset."""
    return f'<small class="{MATH_IGNORE}">{escape_markdown_math(html.escape(text, quote=False))}</small>'


def status_badge(status: str) -> str:
    """A status for an HTML table: a dot in the status colour, then the word in the theme's text colour."""
    colour = STATUS_COLOURS.get(status, "#999999")
    weight = ";font-weight:600" if status == "failed" else ""
    return (
        f"<span class='cfnb-status' style='white-space:nowrap{weight}'>"
        f"<span style='color:{colour}'>●</span> {html.escape(status)}</span>"
    )
