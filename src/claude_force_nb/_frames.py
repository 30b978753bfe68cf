"""The DataFrames the magic shows: real pandas frames whose notebook HTML MathJax leaves alone.

A table of answers or tasks with dollar amounts ("costs $5 … saves $3") is typeset by JupyterLab's MathJax
as LaTeX between the two `$`, mangling the cells (see `_style` for why). pandas can mark its HTML for
MathJax to skip (`display.html.use_mathjax = False` adds the `tex2jax_ignore` class; pandas 3 adds
`mathjax_ignore` too), but that option is global: setting it would silently change every other frame in the
user's notebook. So the frames we return and display are a `MathSafeFrame`, a `pandas.DataFrame` subclass
whose own HTML repr turns the option off just while it renders, inside an element with both classes
(`_style.MATH_IGNORE`). Everything else is pandas' own: the frames derived from it (a filter, `.head()`,
`.assign()`) stay math-safe, and any other DataFrame renders as the user configured pandas.

This module imports pandas at once: load it only where a frame is about to be built.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ._style import MATH_IGNORE

__all__ = ["MathSafeFrame", "math_safe"]


class MathSafeFrame(pd.DataFrame):  # type: ignore[misc]  # pandas ships no type stubs here
    """A `pandas.DataFrame` whose HTML in a notebook is never typeset as maths (`$` stays a dollar)."""

    @property
    def _constructor(self) -> Any:  # frames derived from this one keep the math-safe repr
        return MathSafeFrame

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.html.use_mathjax", False):
            html: str | None = super()._repr_html_()
        # pandas 3 marks the table with both classes; pandas 2 only with MathJax 2's `tex2jax_ignore`.
        return None if html is None else f'<div class="{MATH_IGNORE}">{html}</div>'


def math_safe(value: Any) -> Any:
    """`value` as a MathSafeFrame if it is a plain DataFrame (the data shared, not copied), else unchanged."""
    if isinstance(value, pd.DataFrame) and not isinstance(value, MathSafeFrame):
        return MathSafeFrame(value)
    return value
