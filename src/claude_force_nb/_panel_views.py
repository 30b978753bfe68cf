"""What the panel shows, as HTML: one call in detail, the budget gauge, cache entries, the static snapshot.

Pure string work over records, budgets and frames (no ipywidgets here), so the panel's widgets only hold
the strings these functions return. Every fragment is escaped and wrapped math-safe: answers and costs
contain dollar signs. Colours come from the theme's CSS variables (JupyterLab's `--jp-*`, with light
fallbacks elsewhere) or the shared status palette, so the panel reads in the light and the dark theme.
"""

from __future__ import annotations

import html
import math
import time
from typing import TYPE_CHECKING, Any

from ._display import format_cost
from ._records import RunRecord
from ._style import STATUS_COLOURS, math_safe_html, status_badge

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["budget_gauge_html", "cache_entries_html", "call_detail_html", "snapshot_html"]

_TEXT = "var(--jp-ui-font-color1, #1f2328)"
_MUTED = "var(--jp-ui-font-color2, #59636e)"
_BORDER = "var(--jp-border-color2, #d0d7de)"
_SURFACE = "var(--jp-layout-color2, #f6f8fa)"
_CELL = "padding:1px 10px 1px 0;text-align:left"


def _kv(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th style='{_CELL};color:{_MUTED};font-weight:normal'>{k}</th><td style='{_CELL}'>{v}</td></tr>"
        for k, v in rows
    )
    return f"<table class='cfnb-kv' style='font-size:12px'>{cells}</table>"


def _seconds(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.2f} s"


def call_detail_html(record: RunRecord | None, *, streamed: str = "", label: str = "") -> str:
    """One call in full: its status, answer (what has streamed so far while it runs), its error whole,
    every attempt with its outcome, tokens and cost. `record` None: the call has not been queued yet."""
    if record is None:
        return math_safe_html(
            f"<div class='cfnb-detail' style='color:{_MUTED}'>{html.escape(label)}: not queued yet</div>"
        )
    answer = record.output if record.output is not None else streamed
    if answer:
        caret = " ▌" if not record.done else ""
        body = (
            f"<div class='cfnb-answer' style='white-space:pre-wrap;max-height:260px;overflow-y:auto;"
            f"padding:6px 8px;border-left:3px solid {STATUS_COLOURS.get(record.status, _BORDER)};"
            f"background:{_SURFACE};color:{_TEXT}'>{html.escape(answer)}{caret}</div>"
        )
    elif record.status in ("running", "retrying"):
        body = f"<i style='color:{_MUTED}'>answering… (text streams here while this row is selected)</i>"
    elif record.status == "queued":
        body = f"<i style='color:{_MUTED}'>queued: waiting for a concurrency slot or the budget</i>"
    else:
        body = ""
    error = ""
    if record.error:
        kind = f"{html.escape(record.error_type)}: " if record.error_type else ""
        error = (
            f"<div class='cfnb-error' style='white-space:pre-wrap;margin-top:4px;padding:4px 8px;"
            f"border-left:3px solid {STATUS_COLOURS['failed']};color:{_TEXT}'><b>{kind}</b>"
            f"{html.escape(record.error)}</div>"
        )
    attempts = (
        "<ol class='cfnb-attempts' style='margin:0;padding-left:18px'>"
        + "".join(
            f"<li>{_seconds(span.end - span.start) if span.end is not None else 'in flight'}"
            f" · {html.escape(str(span.outcome or 'running'))}</li>"
            for span in record.spans
        )
        + "</ol>"
        if record.spans
        else f"<span style='color:{_MUTED}'>none (never sent)</span>"
        if record.done and not record.cached
        else ""
    )
    prompt = record.input_tokens + record.cache_read_input_tokens + record.cache_creation_input_tokens
    facts = [
        ("status", status_badge(record.status) + (" (from the cache)" if record.cached else "")),
        ("model", html.escape(record.model)),
        ("attempts", attempts),
    ]
    if record.done:
        read = record.cache_read_input_tokens
        tokens = f"{prompt} in ({read} read from the prompt cache) → {record.output_tokens} out"
        cost = ("≤" if record.cost_is_estimate else "") + format_cost(record.cost_usd)
        if record.cost_saved_usd:
            cost += f" (saved {format_cost(record.cost_saved_usd)})"
        facts += [("tokens", tokens), ("cost", cost)]
        if record.attempts or record.cached:
            facts.append(("latency", _seconds(record.latency_s)))
        if not math.isnan(record.queue_s):
            facts.append(("queued for", _seconds(record.queue_s)))
    title = html.escape(label or record.agent)
    head = f"<div style='font-weight:600;margin-bottom:4px;color:{_TEXT}'>{title}</div>"
    return math_safe_html(f"<div class='cfnb-detail'>{head}{body}{error}{_kv(facts)}</div>")


def budget_gauge_html(spent: float, held: float, limit: float | None, *, what: str = "budget") -> str:
    """A bar of the budget: spent, held by calls in flight, and what is left, with the figures in words."""
    if limit is None:
        return math_safe_html(
            f"<span class='cfnb-gauge' style='color:{_MUTED}'>{html.escape(what)}: none · "
            f"{format_cost(spent)} spent</span>"
        )
    scale = max(limit, spent + held, 1e-12)
    spent_pct, held_pct = 100 * spent / scale, 100 * held / scale
    words = f"{what}: {format_cost(spent)} spent · {format_cost(held)} held · {format_cost(limit)} limit"
    return math_safe_html(
        f"<div class='cfnb-gauge' title='{html.escape(words)}' "
        "style='display:flex;align-items:center;gap:8px'>"
        f"<div style='width:160px;height:10px;border:1px solid {_BORDER};display:flex;"
        f"background:{_SURFACE}'>"
        f"<div class='cfnb-gauge-spent' style='width:{spent_pct:.1f}%;"
        f"background:{STATUS_COLOURS['succeeded']}'></div>"
        f"<div class='cfnb-gauge-held' style='width:{held_pct:.1f}%;"
        f"background:{STATUS_COLOURS['retrying']}'></div>"
        f"</div><span style='color:{_TEXT};font-size:12px'>{html.escape(words)}</span></div>"
    )


def cache_entries_html(entries: pd.DataFrame, *, now: float | None = None, limit: int = 20) -> str:
    """The newest cache entries: agent, task preview, size, age, hits (from `entries_frame`)."""
    if entries.empty:
        return f"<i style='color:{_MUTED}'>the cache is empty</i>"
    now = time.time() if now is None else now
    rows = []
    for _, entry in entries.head(limit).iterrows():
        created = entry["created"]
        age = now - created.timestamp() if hasattr(created, "timestamp") else math.nan
        task = str(entry["task"]) if "task" in entries.columns else ""
        rows.append(
            "<tr class='cfnb-entry'>"
            + "".join(
                f"<td style='{_CELL}'>{cell}</td>"
                for cell in (
                    html.escape(str(entry["agent"])),
                    html.escape(task[:80]),
                    f"{int(entry['bytes']):,} B",
                    _age(age),
                    str(int(entry["hits"])),
                )
            )
            + "</tr>"
        )
    head = "".join(f"<th style='{_CELL}'>{c}</th>" for c in ("agent", "task", "size", "age", "hits"))
    more = len(entries) - min(limit, len(entries))
    tail = (
        f"<div style='color:{_MUTED}'>{more} older entr{'ies' if more != 1 else 'y'} not shown</div>"
        if more
        else ""
    )
    return math_safe_html(
        f"<table class='cfnb-entries' style='font-size:12px;color:{_TEXT}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{tail}"
    )


def _age(seconds: float) -> str:
    if math.isnan(seconds):
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def snapshot_html(*parts: Any) -> str:
    """The panel's last state as static HTML, saved with the widget's output so a notebook opened without
    a widget manager (an exported HTML file, GitHub, nbviewer) still shows its table."""
    body = "".join(str(p) for p in parts if p)
    # Hidden in an output area that also holds the live panel (JupyterLab, Notebook 7, VS Code).
    hide = "<style>.jp-OutputArea:has(.cfnb-panel) .cfnb-panel-snapshot{display:none}</style>"
    return (
        f"{hide}<div class='cfnb-panel-snapshot' style='color:{_TEXT}'>"
        f"<div style='color:{_MUTED};font-size:11px'>claude_force_nb panel (a saved snapshot)</div>"
        f"{body}</div>"
    )
