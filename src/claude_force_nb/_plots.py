"""Inline charts of a session's calls: latency, cost, cache hit rate, and a timeline of calls and attempts.

Every `plot_*` function takes the runs frame (`RunLog.to_frame()`, one row per call), draws on the `ax` it is
given, or on a new figure when `ax` is None, and returns that Axes. Nothing here calls `plt.show()`, picks a
backend or changes global rcParams: the notebook (or `%agent plot`) decides how a figure is shown. matplotlib,
numpy and pandas are imported inside the functions, so importing this module is free (the layering rule
in docs/architecture.md).

Conventions shared by the charts:

- An empty frame draws "no runs yet" instead of raising, so a chart cell can run before any call has.
- A NaN cost means the model has no rate on the rate card: it is labelled "unpriced", never drawn as $0.
- A status has the same colour in every chart and in the live table: `STATUS_COLOURS` from `_style` (the
  Okabe-Ito palette, readable with colour-vision deficiency).
- Nothing overlaps, from 3 calls to thousands: legends sit outside the data, to the right; the timeline's
  "in flight" strip and the cache counters have axes of their own; titles count what is drawn and say what
  is left out.
- `theme="auto"` (the default) draws on a transparent figure with mid-grey text, readable on JupyterLab's
  light and dark themes alike; `theme="light"` / `"dark"` paint an opaque background with full-contrast text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ._style import STATUS_COLOURS

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ATTEMPT_COLUMNS",
    "attempts_frame",
    "chart_figure",
    "plot_cache",
    "plot_cost",
    "plot_latency",
    "plot_timeline",
]

ATTEMPT_COLUMNS = ("run_id", "agent", "attempt", "start", "end", "outcome", "cached", "status")

Theme = Literal["auto", "light", "dark"]
THEMES: tuple[Theme, ...] = ("auto", "light", "dark")

_STATUS_COLOURS = STATUS_COLOURS
_ATTEMPT_FAILED = "attempt failed"  # a failed attempt that was retried: the warning colour
_COLOURS = {**_STATUS_COLOURS, _ATTEMPT_FAILED: STATUS_COLOURS["retrying"]}
_SAVED_COLOUR = _STATUS_COLOURS["cached"]
_MUTED = "0.4"  # drawn first, then mapped to the theme's muted colour by _apply_theme
_INK = "black"  # likewise, the theme's text colour
# (background or None for transparent, text, muted text, grid lines)
_THEMES: dict[str, tuple[str | None, str, str, str]] = {
    "auto": (None, "#7a7a7a", "#8c8c8c", "#8c8c8c40"),
    "light": ("#ffffff", "#1f2328", "#57606a", "#d0d7de"),
    "dark": ("#1e1e1e", "#e6edf3", "#9da7b3", "#3d444d"),
}
_FINAL = ("succeeded", "cached", "failed", "cancelled", "refused")
_NO_RUNS = "no runs yet"
_STAT_NAMES = ("hits", "misses", "evictions", "expirations", "integrity_failures")
_STRIP = 0.16  # the timeline's concurrency strip: this fraction of the axes height, at the bottom
_MAX_ROW_LABELS = 40  # past this many calls a timeline's per-row tick labels only make a black smear


class _SpanLike(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float | None: ...
    @property
    def outcome(self) -> str: ...


class _RecordLike(Protocol):
    @property
    def run_id(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def cached(self) -> bool: ...
    @property
    def status(self) -> str: ...
    @property
    def spans(self) -> Sequence[_SpanLike]: ...


class _CacheStatsLike(Protocol):
    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def expirations(self) -> int: ...
    @property
    def integrity_failures(self) -> int: ...


# -- shared helpers --------------------------------------------------------------------------------------


def _format_usd(value: float) -> str:
    """Dollars with enough decimals for tiny costs: $1,234, $12.34, $0.50, $0.0012; NaN is "unpriced"."""
    if math.isnan(value):
        return "unpriced"
    size = abs(value)
    if size < 5e-9:
        return "$0"
    if size >= 1000:
        text = f"{size:,.0f}"
    elif size >= 1:
        text = f"{size:,.2f}"
    else:  # two significant figures, but never fewer than two decimals ($0.50, not $0.5)
        decimals = min(8, 1 - math.floor(math.log10(size)))
        whole, fraction = f"{size:.{decimals}f}".split(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    return ("-$" if value < 0 else "$") + text


def _require(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks column(s) {missing}; pass RunLog.to_frame() or AgentResult frames")


def _target(ax: Axes | None, size: tuple[float, float]) -> Axes:
    """The caller's Axes, or a fresh one on a new pyplot figure (so notebooks display it inline)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    new: Axes
    _figure, new = plt.subplots(figsize=size, layout="constrained")
    return new


def _check_theme(theme: str) -> None:
    if theme not in _THEMES:
        raise ValueError(f"theme={theme!r}: use one of {', '.join(THEMES)}")


def _apply_theme(ax: Axes, theme: str, *, own_figure: bool) -> Axes:
    """Recolour what was drawn in the neutral colours (_INK, _MUTED, grid) for `theme`.

    The figure's background is only changed when this module made the figure, or when a theme other than
    "auto" was asked for: a caller's own figure keeps its look otherwise.
    """
    from matplotlib.colors import same_color
    from matplotlib.text import Text

    background, ink, muted, grid = _THEMES[theme]
    if own_figure or background is not None:
        patch = ax.figure.patch
        patch.set_facecolor(background or "none")
        patch.set_alpha(0.0 if background is None else 1.0)
    for axes in (ax, *ax.child_axes):
        axes.patch.set_facecolor(background or "none")
        axes.patch.set_alpha(0.0 if background is None else 1.0)
        axes.tick_params(axis="both", which="both", colors=muted, labelcolor=ink, grid_color=grid)
        for spine in axes.spines.values():
            spine.set_edgecolor(muted)
        legend = axes.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(background or "none")
            legend.get_frame().set_edgecolor(grid)
    for text in ax.findobj(Text):
        colour = text.get_color()
        if same_color(colour, _INK):
            text.set_color(ink)
        elif same_color(colour, _MUTED):
            text.set_color(muted)
    return ax


def chart_figure(size: tuple[float, float], theme: Theme = "auto") -> Figure:
    """A bare Figure for the package's own chart views (`%agent plot`, the panel): no pyplot, so the same PNG
    whatever the kernel's backend and nothing left in pyplot's figure list. With `theme="auto"` it is
    transparent, so the notebook's light or dark background shows through; "light"/"dark" paint their own
    (the plot_* functions do that)."""
    from matplotlib.figure import Figure

    _check_theme(theme)
    figure = Figure(figsize=size, layout="constrained")
    if theme == "auto":
        figure.patch.set_alpha(0.0)
    return figure


def _message(ax: Axes, title: str, text: str) -> Axes:
    ax.set_title(title)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12, color=_MUTED)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _tidy(ax: Axes, *, grid: Literal["x", "y"]) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis=grid, linewidth=0.8)
    ax.set_axisbelow(True)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _utc(column: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(column, utc=True)


def _seconds(stamps: pd.Series, origin: pd.Timestamp) -> npt.NDArray[np.float64]:
    import numpy as np

    result: npt.NDArray[np.float64] = (
        (stamps - origin).dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)
    )
    return result


# -- attempts ------------------------------------------------------------------------------------------------


def attempts_frame(records: Iterable[_RecordLike]) -> pd.DataFrame:
    """One row per attempt of each call (columns `ATTEMPT_COLUMNS`); UTC times, end NaT while running.

    `records` is a `RunLog` or any iterable of `RunRecord`-like objects. Cache hits made no attempt: no rows.
    """
    import pandas as pd

    rows = [
        (
            record.run_id,
            record.agent,
            number,
            span.start,
            math.nan if span.end is None else span.end,
            span.outcome,
            bool(record.cached),
            record.status,
        )
        for record in records
        for number, span in enumerate(record.spans, start=1)
    ]
    frame = pd.DataFrame(rows, columns=list(ATTEMPT_COLUMNS)).astype({"attempt": "int64", "cached": "bool"})
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column].astype("float64"), unit="s", utc=True)
    return frame


# -- latency -------------------------------------------------------------------------------------------------


def _horizontal() -> dict[str, Any]:
    """`boxplot` orientation keyword: `orientation=` from matplotlib 3.10, `vert=` (now deprecated) before."""
    import matplotlib

    version = tuple(int(part) for part in matplotlib.__version__.split(".")[:2] if part.isdigit())
    return {"orientation": "horizontal"} if version >= (3, 10) else {"vert": False}


def plot_latency(frame: pd.DataFrame, *, ax: Axes | None = None, theme: Theme = "auto") -> Axes:
    """Latency of finished calls per agent: a box of the real calls, with every call as a dot on top.

    Cache hits are hollow diamonds near zero; calls that never reached the API (refused by the budget,
    failed before a first attempt) took no time worth plotting and are left out.
    """
    import numpy as np

    _require(frame, ("agent", "status", "cached", "attempts", "latency_s"))
    _check_theme(theme)
    own = ax is None
    title = "Latency by agent"
    finished = frame[frame["status"].isin(_FINAL) & frame["latency_s"].notna()]
    shown = finished[finished["cached"].astype(bool) | (finished["attempts"] > 0)]
    agents = sorted(str(agent) for agent in shown["agent"].unique())
    ax = _target(ax, (7.5, max(2.8, 0.6 * len(agents) + 1.6)))
    if shown.empty:
        _message(ax, title, _NO_RUNS if frame.empty else "no finished calls yet")
        return _apply_theme(ax, theme, own_figure=own)

    row = {agent: index for index, agent in enumerate(agents)}
    y = shown["agent"].astype(str).map(row).to_numpy(dtype=float)
    y += np.random.default_rng(0).uniform(-0.2, 0.2, size=len(y))  # fixed seed: same picture every time
    latency = shown["latency_s"].to_numpy(dtype=float)
    cached = shown["cached"].to_numpy(dtype=bool)
    status = shown["status"].astype(str).to_numpy()

    real = shown[~cached]
    boxes = [(row[str(a)], group.to_numpy(dtype=float)) for a, group in real.groupby("agent")["latency_s"]]
    if boxes:
        ax.boxplot(
            [values for _, values in boxes],
            positions=[position for position, _ in boxes],
            widths=0.55,
            showfliers=False,  # every call is drawn as a dot already
            patch_artist=True,
            manage_ticks=False,
            boxprops={"facecolor": (0.5, 0.5, 0.5, 0.15), "edgecolor": "0.5"},
            medianprops={"color": "0.5", "linewidth": 2},
            whiskerprops={"color": "0.5"},
            capprops={"color": "0.5"},
            zorder=2,
            **_horizontal(),
        )
    for name in _FINAL:
        chosen = ~cached & (status == name)
        if chosen.any():
            ax.scatter(
                latency[chosen],
                y[chosen],
                s=16,
                color=_STATUS_COLOURS[name],
                alpha=0.8,
                edgecolors="none",
                zorder=3,
                label=name,
            )
    if cached.any():
        ax.scatter(
            latency[cached],
            y[cached],
            s=24,
            marker="D",
            facecolors="none",
            edgecolors=_SAVED_COLOUR,
            linewidths=1.2,
            zorder=3,
            label="cache hit",
        )

    counts = shown.groupby(shown["agent"].astype(str)).size()
    ax.set_yticks(range(len(agents)), labels=[f"{agent} (n={counts[agent]})" for agent in agents])
    ax.set_ylim(len(agents) - 0.5, -0.5)  # first agent (alphabetically) on top
    ax.set_xlim(-0.012 * float(np.nanmax(latency)), None)  # cache hits at ~0 s stay clear of the spine
    ax.set_xlabel("latency (s)")
    hits = int(cached.sum())
    heading = f"{title} · {_plural(len(shown) - hits, 'call')}, {_plural(hits, 'cache hit')}"
    left_out = len(frame) - len(shown)
    if left_out:  # say what is not drawn, so the count matches the run's
        heading += f"\n{_plural(left_out, 'call')} of {len(frame):,} not drawn (unfinished or never sent)"
    ax.set_title(heading, fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _tidy(ax, grid="x")
    return _apply_theme(ax, theme, own_figure=own)


# -- cost ----------------------------------------------------------------------------------------------------


def _amount_label(total: float, priced: int, unpriced: int) -> str:
    if not priced and not unpriced:
        return ""
    if not priced or (unpriced and total == 0):  # "$0 + 3 unpriced" would read as "free"
        return f"unpriced ({_plural(unpriced, 'call')})"
    return _format_usd(total) + (f" + {unpriced:,} unpriced" if unpriced else "")


def plot_cost(frame: pd.DataFrame, *, ax: Axes | None = None, theme: Theme = "auto") -> Axes:
    """Spend per "agent · model" (horizontal bars, largest on top) with what cache hits saved beside it.

    Calls on a model with no rate (NaN cost) are counted as "unpriced" in the bar labels, the title and the
    legend; they add nothing to the dollar totals, which say so rather than pretend those calls were free.
    """
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    _require(frame, ("run_id", "agent", "model", "cached", "cost_usd", "cost_saved_usd"))
    _check_theme(theme)
    own = ax is None
    title = "Cost by agent · model"
    # Batch rows get their own bars ("model (batch)"); their saving is the batch discount off the
    # interactive price, which `_batch.py` records in cost_saved_usd as a cache hit records what it saved.
    has_batch = "mode" in frame.columns and bool(frame["mode"].eq("batch").any())
    if has_batch:
        batch = frame["mode"].eq("batch")
        frame = frame.assign(model=frame["model"].where(~batch, frame["model"] + " (batch)"))
    keys = frame[["agent", "model"]].drop_duplicates()
    ax = _target(ax, (8.0, max(2.8, 0.7 * len(keys) + 1.8)))
    if frame.empty:
        _message(ax, title, _NO_RUNS)
        return _apply_theme(ax, theme, own_figure=own)

    cached = frame["cached"].astype(bool)
    data = frame.assign(
        priced=frame["cost_usd"].notna(),
        unpriced=frame["cost_usd"].isna(),
        hit=cached,
        hit_unpriced=cached & frame["cost_saved_usd"].isna(),
    )
    table = (
        data.groupby(["agent", "model"], sort=False)
        .agg(
            spent=("cost_usd", "sum"),  # NaN (unpriced) costs are skipped, and counted apart
            saved=("cost_saved_usd", "sum"),
            priced=("priced", "sum"),
            unpriced=("unpriced", "sum"),
            hits=("hit", "sum"),
            hits_unpriced=("hit_unpriced", "sum"),
        )
        .sort_values(["spent", "saved"], ascending=False)
    )
    y = np.arange(len(table))
    spend = ax.barh(y - 0.2, table["spent"], height=0.38, color=_STATUS_COLOURS["succeeded"], label="spent")
    saved_label = "saved by cache hits and the batch discount" if has_batch else "saved by cache hits"
    saved = ax.barh(y + 0.2, table["saved"], height=0.38, color=_SAVED_COLOUR, label=saved_label)
    spend_labels = [_amount_label(r.spent, int(r.priced), int(r.unpriced)) for r in table.itertuples()]
    saved_labels = [
        _amount_label(r.saved, int(r.hits - r.hits_unpriced), int(r.hits_unpriced))
        for r in table.itertuples()
    ]
    ax.bar_label(spend, labels=spend_labels, padding=3, fontsize=8, parse_math=False)
    ax.bar_label(saved, labels=saved_labels, padding=3, fontsize=8, color=_MUTED, parse_math=False)

    ax.set_yticks(y, labels=[f"{agent} · {model}" for agent, model in table.index])
    ax.set_ylim(len(table) - 0.5, -0.5)
    widest = float(np.nanmax([table["spent"].max(), table["saved"].max(), 0.0]))
    if widest > 0:
        ax.set_xlim(0, widest * 1.45)  # room for the labels at the bar ends
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # "$0.0012"-wide labels: few ticks, no overlap
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: _format_usd(value)))
        ax.set_xlabel("USD")
    else:
        ax.set_xlim(0, 1)
        ax.set_xticks([])
        ax.set_xlabel("USD (nothing priced)")

    unpriced = int(table["unpriced"].sum() + table["hits_unpriced"].sum())
    spent_total = _format_usd(float(table["spent"].sum()))
    saved_total = _format_usd(float(table["saved"].sum()))
    summary = f"{_plural(len(frame), 'call')} · spent {spent_total} · saved {saved_total}"
    if unpriced:
        summary += f" · {unpriced:,} unpriced"
    ax.set_title(f"{title}\n{summary}", fontsize=11, parse_math=False)  # two "$" would start mathtext
    handles: list[Any] = [spend, saved]
    if unpriced:  # a text-only legend entry: there is no bar to key, the amount is unknown
        note = f"unpriced: {_plural(unpriced, 'call')}\n(model has no rate;\nnot in the totals)"
        handles.append(Line2D([], [], linestyle="none", label=note))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _tidy(ax, grid="x")
    return _apply_theme(ax, theme, own_figure=own)


# -- cache ---------------------------------------------------------------------------------------------------


def _stat_counts(stats: _CacheStatsLike | Mapping[str, int]) -> list[int]:
    get = stats.get if isinstance(stats, Mapping) else (lambda name: getattr(stats, name, None))
    values = [get(name) for name in _STAT_NAMES]
    if any(value is None for value in values):
        raise TypeError(f"stats needs {', '.join(_STAT_NAMES)} (a CacheStats, or a mapping with those keys)")
    return [int(value) for value in values]  # type: ignore[arg-type]


def _draw_stats(ax: Axes, counts: list[int]) -> None:
    """The counters as a key of their own to the right of the plot, never over the line: a legend, so
    constrained layout and `bbox_inches="tight"` make room for it whatever the figure's size."""
    from matplotlib.patches import Patch

    colours = [_SAVED_COLOUR, "0.6", "0.6", "0.6", _STATUS_COLOURS["failed"]]
    handles = [
        Patch(color=colour, label=f"{name.replace('_', ' ')}: {count:,}")
        for name, count, colour in zip(_STAT_NAMES, counts, colours, strict=True)
    ]
    ax.legend(
        handles=handles,
        title="cache counters",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title_fontsize=8,
        frameon=False,
        alignment="left",
    )


def plot_cache(
    frame: pd.DataFrame,
    *,
    stats: _CacheStatsLike | Mapping[str, int] | None = None,
    ax: Axes | None = None,
    theme: Theme = "auto",
) -> Axes:
    """The response cache's cumulative hit rate over the calls of the session, in the order they were queued.

    Only calls that reached a final status other than "refused" count (a refused call never asked the cache).
    Ticks along the bottom mark the hits. With `stats` (a `CacheStats`, or a mapping with hits, misses,
    evictions, expirations and integrity_failures), those counters are listed in a key to the right.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    _require(frame, ("status", "cached"))
    _check_theme(theme)
    own = ax is None
    counts = None if stats is None else _stat_counts(stats)
    title = "Response cache hit rate"
    ax = _target(ax, (7.5 if counts is None else 9.0, 3.8))
    counted = frame[frame["status"].isin([s for s in _FINAL if s != "refused"])]
    if counted.empty:
        _message(ax, title, _NO_RUNS if frame.empty else "no finished calls yet")
        if counts is not None:
            _draw_stats(ax, counts)
        return _apply_theme(ax, theme, own_figure=own)

    hit = counted["cached"].to_numpy(dtype=bool)
    number = np.arange(1, len(hit) + 1, dtype=float)
    rate = np.cumsum(hit) / number
    ax.plot(
        number,
        rate,
        color=_SAVED_COLOUR,
        linewidth=2,
        marker="o" if len(hit) <= 30 else None,
        markersize=4,
        label="cumulative hit rate",
    )
    if hit.any():
        ax.plot(
            number[hit],
            np.full(int(hit.sum()), -0.03),
            linestyle="none",
            marker="|",
            markersize=7,
            color=_SAVED_COLOUR,
            alpha=0.7,
            label="cache hit",
        )
    ax.set_ylim(-0.06, 1.08)
    ax.set_xlim(0.5, len(hit) + 0.5)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("call # (in the order queued)")
    ax.set_ylabel("hit rate so far")
    # the final rate goes in the title, not next to the line's end, where it would cross a jagged line
    heading = f"{title} · {rate[-1]:.0%}: {_plural(int(hit.sum()), 'hit')} in {_plural(len(hit), 'call')}"
    left_out = len(frame) - len(counted)
    if left_out:
        heading += f"\n{_plural(left_out, 'call')} not counted (refused or unfinished)"
    ax.set_title(heading, fontsize=11)
    if counts is not None:
        _draw_stats(ax, counts)
    _tidy(ax, grid="y")
    return _apply_theme(ax, theme, own_figure=own)


# -- timeline ------------------------------------------------------------------------------------------------


def _peak_concurrency(
    starts: Sequence[float] | npt.NDArray[np.float64], ends: Sequence[float] | npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int]:
    """How many of the half-open intervals [start, end) overlap at each change: (times, counts, peak)."""
    import numpy as np

    start = np.asarray(starts, dtype=float)
    end = np.asarray(ends, dtype=float)
    keep = np.isfinite(start) & np.isfinite(end) & (end > start)
    times = np.concatenate([start[keep], end[keep]])
    delta = np.concatenate(
        [np.ones(int(keep.sum()), dtype=np.int64), -np.ones(int(keep.sum()), dtype=np.int64)]
    )
    # at equal times ends (-1) sort before starts (+1), so intervals that only touch do not overlap
    order = np.lexsort((delta, times))
    counts = np.cumsum(delta[order])
    return times[order], counts, int(counts.max()) if len(counts) else 0


def _attempt_segments(
    attempts: pd.DataFrame, run_ids: pd.Index, origin: pd.Timestamp, now: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], list[str]]:
    """(call index, start s, end s, colour key) per attempt of a plotted call, in (call, attempt) order."""
    import numpy as np

    where = run_ids.get_indexer(attempts["run_id"])
    rows = attempts[where >= 0].assign(call=where[where >= 0]).sort_values(["call", "attempt"], kind="stable")
    start = _seconds(_utc(rows["start"]), origin)
    end = _seconds(_utc(rows["end"]), origin)
    end = np.where(np.isnan(end), now, end)
    last = (rows["attempt"] == rows.groupby("call")["attempt"].transform("max")).to_numpy(dtype=bool)
    outcome = rows["outcome"].astype(str).to_numpy()
    status = rows["status"].astype(str).to_numpy()
    keys: list[str] = []
    for result, is_last, call_status in zip(outcome, last, status, strict=True):
        if result == "ok":
            keys.append("succeeded")
        elif result in ("cancelled", "running"):
            keys.append(result)
        else:  # an error class name: the warning colour, unless it was the call's last word
            keys.append("failed" if is_last and call_status == "failed" else _ATTEMPT_FAILED)
    return rows["call"].to_numpy(dtype=np.int64), start, end, keys


def plot_timeline(
    frame: pd.DataFrame,
    *,
    attempts: pd.DataFrame | None = None,
    ax: Axes | None = None,
    theme: Theme = "auto",
) -> Axes:
    """A Gantt chart of calls over wall time: one row per call, ordered by start, coloured by status.

    Cache hits are diamonds and calls that never reached the API are crosses. With `attempts`
    (`attempts_frame(log)`), each attempt is its own segment: retried failures in orange, the backoff
    between attempts a dotted line. A strip of its own under the rows (`ax.child_axes[0]`) shows how many
    attempts were in flight; the title gives the peak. Everything is drawn as a handful of collections, so
    thousands of calls stay fast.
    """
    import numpy as np
    import pandas as pd
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    _require(frame, ("run_id", "agent", "status", "cached", "attempts", "started_at", "finished_at"))
    _check_theme(theme)
    own = ax is None
    title = "Timeline"
    calls = frame[_utc(frame["started_at"]).notna().to_numpy()]
    total = len(calls)
    ax = _target(ax, (9.5, min(7.5, max(2.8, 0.26 * total + 1.6))))
    if not total:
        _message(ax, title, _NO_RUNS if frame.empty else "no call has started yet")
        return _apply_theme(ax, theme, own_figure=own)

    started_at = _utc(calls["started_at"])
    origin = started_at.min()
    start = _seconds(started_at, origin)
    end = _seconds(_utc(calls["finished_at"]), origin)
    status = calls["status"].astype(str).to_numpy()
    cached = calls["cached"].to_numpy(dtype=bool)
    never_ran = ~cached & (calls["attempts"].to_numpy(dtype=float) == 0) & np.isin(status, _FINAL)
    # A call refused (or cancelled) before any attempt belongs where that happened, not where it was queued:
    # budget refusals come at the end of a batch, when the money runs out.
    start = np.where(never_ran & ~np.isnan(end), end, start)
    row = np.empty(total, dtype=np.int64)
    row[np.argsort(start, kind="stable")] = np.arange(total)
    known = [start, end]
    if attempts is not None:
        attempts = attempts[
            attempts["run_id"].isin(calls["run_id"])
        ]  # attempts of calls not plotted: ignored
        known += [_seconds(_utc(attempts[c]), origin) for c in ("start", "end")]
    now = float(np.nanmax(np.concatenate(known)))  # the right edge; unfinished work runs up to it
    end = np.where(np.isnan(end), now, end)

    barred = ~cached & ~never_ran
    call = np.flatnonzero(barred)
    x0, x1, keys = start[call], end[call], [str(s) for s in status[call]]
    gaps = np.empty((0, 2, 2))
    if attempts is not None and len(attempts):
        run_ids = pd.Index(calls["run_id"])
        a_call, a_start, a_end, a_keys = _attempt_segments(attempts, run_ids, origin, now)
        chosen = barred[a_call]
        a_call, a_start, a_end = a_call[chosen], a_start[chosen], a_end[chosen]
        a_keys = [key for key, keep in zip(a_keys, chosen, strict=True) if keep]
        whole = barred & ~np.isin(np.arange(total), a_call)  # calls with no attempt rows keep one bar
        call = np.concatenate([np.flatnonzero(whole), a_call])
        x0 = np.concatenate([start[whole], a_start])
        x1 = np.concatenate([end[whole], a_end])
        keys = [str(s) for s in status[whole]] + a_keys
        same = a_call[1:] == a_call[:-1]  # consecutive attempts of one call: the backoff between them
        y_gap = row[a_call[1:][same]].astype(float)
        gaps = np.stack(
            [np.column_stack([a_end[:-1][same], y_gap]), np.column_stack([a_start[1:][same], y_gap])], axis=1
        )

    y = row[call].astype(float)
    height = 0.72
    low, high = y - height / 2, y + height / 2
    verts = np.stack([np.column_stack(c) for c in ((x0, low), (x0, high), (x1, high), (x1, low))], axis=1)
    colours = [_COLOURS.get(key, _MUTED) for key in keys]
    dense = total > 200
    edge = 0.3 if dense else 0.5  # an edge keeps bars visible when they are shorter or thinner than a pixel
    ax.add_collection(
        PolyCollection(list(verts), facecolors=colours, edgecolors=colours, linewidths=edge, zorder=2)
    )
    if len(gaps):
        ax.add_collection(LineCollection(list(gaps), colors="0.35", linewidths=1, linestyles=":", zorder=1))
    marker_size = 4 if dense else 28
    if cached.any():
        ax.scatter(
            start[cached],
            row[cached],
            marker="D",
            s=marker_size,
            color=_SAVED_COLOUR,
            zorder=1.5 if dense else 3,
            alpha=0.6 if dense else 1.0,
        )
    if never_ran.any():
        ax.scatter(
            start[never_ran],
            row[never_ran],
            marker="x",
            s=marker_size,
            zorder=3,
            color=[_COLOURS.get(str(s), _MUTED) for s in status[never_ran]],
        )

    span = max(now, 1e-3)
    ax.set_xlim(-0.01 * span, span * 1.02)
    # the bottom _STRIP of the axes is left free of rows, for the concurrency strip
    ax.set_ylim(-0.5 + total / (1 - _STRIP), -0.5)
    ax.set_xlabel("seconds since the first call started")
    if total <= _MAX_ROW_LABELS:
        order = np.argsort(row)
        ax.set_yticks(
            range(total),
            labels=calls["agent"].astype(str).to_numpy()[order],
            fontsize=9 if total <= 20 else 7,
        )
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{total:,} calls, in order of start")

    # concurrency: attempts in flight (or whole calls, without an attempts frame), in a strip of its own
    # under the rows (inside the axes, so it needs no room of its own and never covers a bar or a label)
    times, counts, peak = _peak_concurrency(x0, x1)
    if peak:
        strip = ax.inset_axes((0.0, 0.0, 1.0, _STRIP * 0.8), sharex=ax)
        strip.fill_between(
            np.append(times, span * 1.02), np.append(counts, 0), step="post", color="0.55", alpha=0.35, lw=0
        )
        strip.set_ylim(0, peak * 1.25)
        strip.set_yticks([])
        strip.tick_params(axis="x", bottom=False, labelbottom=False)
        strip.spines[["top", "right", "left"]].set_visible(False)
        strip.text(
            0.005,
            0.98,
            f"in flight (peak {peak})",
            transform=strip.transAxes,
            ha="left",
            va="top",
            fontsize=7,
            color=_MUTED,
        )
    ax.set_title(f"Timeline of {_plural(total, 'call')} · peak concurrency {peak}")

    present = set(keys)
    handles: list[Any] = [
        Patch(color=_COLOURS[key], label=key) for key in (*_STATUS_COLOURS, _ATTEMPT_FAILED) if key in present
    ]
    if cached.any():
        handles.append(Line2D([], [], linestyle="none", marker="D", color=_SAVED_COLOUR, label="cache hit"))
    for name in sorted({str(s) for s in status[never_ran]}):
        colour, label = _COLOURS.get(name, _MUTED), f"{name} before any attempt"
        handles.append(Line2D([], [], linestyle="none", marker="x", color=colour, label=label))
    if len(gaps):
        handles.append(Line2D([], [], color="0.35", linestyle=":", label="backoff"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _tidy(ax, grid="x")
    return _apply_theme(ax, theme, own_figure=own)
