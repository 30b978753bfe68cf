"""The inline charts: what each draws (artists, labels, data), empty frames, caller axes, big timelines."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, no GUI event loop

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_rgba

from claude_force_nb._cache.stats import CacheStats
from claude_force_nb._plots import (
    ATTEMPT_COLUMNS,
    _format_usd,
    _peak_concurrency,
    attempts_frame,
    plot_cache,
    plot_cost,
    plot_latency,
    plot_timeline,
)
from claude_force_nb._records import FRAME_COLUMNS
from claude_force_nb._style import STATUS_COLOURS

from .plots_data import T0, UNPRICED_MODEL, call, frame_of, session

PLOTS: list[Callable[..., Axes]] = [plot_latency, plot_cost, plot_cache, plot_timeline]
WARNING = to_rgba(STATUS_COLOURS["retrying"])
FAILED = to_rgba(STATUS_COLOURS["failed"])
SUCCEEDED = to_rgba(STATUS_COLOURS["succeeded"])


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def render(ax: Axes) -> Axes:
    """Draw the figure for real, so layout or glyph problems (warnings are errors here) fail the test."""
    ax.figure.canvas.draw()
    return ax


def texts(ax: Axes) -> list[str]:
    """Every free text and bar label on `ax`."""
    return [t.get_text() for t in ax.texts]


def ytick_labels(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def legend_labels(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def bars_of(ax: Axes) -> PolyCollection:
    """The timeline's single collection of bars."""
    (bars,) = [c for c in ax.collections if type(c) is PolyCollection]
    return bars


# -- shared behaviour ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_empty_frame_draws_a_message(plot: Callable[..., Axes]) -> None:
    """An empty runs frame draws "no runs yet" (no ticks, no data) instead of raising."""
    ax = render(plot(frame_of([])))
    assert "no runs yet" in texts(ax)
    assert not ax.get_xticks().size
    assert not ax.get_yticks().size
    assert not ax.collections
    assert not ax.patches
    assert not ax.lines


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_given_axes_is_drawn_on_and_returned(plot: Callable[..., Axes]) -> None:
    """With `ax=`, the chart lands on that Axes, which is returned, and no other figure is created."""
    figure, given = plt.subplots()
    frame = frame_of(session(30))
    result = plot(frame, ax=given)
    assert result is given
    assert given.has_data() or given.containers or given.child_axes
    assert plt.get_fignums() == [figure.number]
    render(result)


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_new_figure_when_no_axes(plot: Callable[..., Axes]) -> None:
    """Without `ax`, each call makes exactly one new figure and returns an Axes on it."""
    before = set(plt.get_fignums())
    ax = render(plot(frame_of(session(20))))
    assert len(set(plt.get_fignums()) - before) == 1
    assert ax.figure.number not in before


def test_library_never_shows_or_touches_global_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """No chart calls plt.show(), switches backend, or changes rcParams."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("library code called a global pyplot/matplotlib function")

    monkeypatch.setattr(plt, "show", refuse)
    monkeypatch.setattr(matplotlib, "use", refuse)
    records = session(40)
    frame = frame_of(records)
    params = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    for plot in PLOTS:
        render(plot(frame))
    render(plot_timeline(frame, attempts=attempts_frame(records)))
    render(
        plot_cache(
            frame, stats={n: 1 for n in ("hits", "misses", "evictions", "expirations", "integrity_failures")}
        )
    )
    assert dict(matplotlib.rcParams) == params
    assert matplotlib.get_backend() == backend


def test_importing_the_module_loads_no_plotting_stack() -> None:
    """`import claude_force_nb._plots` loads neither matplotlib, pandas nor numpy (they load per call)."""
    code = (
        "import sys, claude_force_nb._plots\n"
        "print(sorted(m for m in ('matplotlib', 'pandas', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_frame_without_the_needed_columns_is_a_clear_error() -> None:
    """A frame that is not a runs frame is refused naming the missing columns, not a KeyError deep inside."""
    with pytest.raises(ValueError, match=r"latency_s"):
        plot_latency(
            pd.DataFrame({"agent": ["a"], "status": ["succeeded"], "cached": [False], "attempts": [1]})
        )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0012, "$0.0012"),
        (0.00123, "$0.0012"),
        (0.000034, "$0.000034"),
        (0.09, "$0.09"),
        (0.5, "$0.50"),
        (0.0999, "$0.10"),
        (12.5, "$12.50"),
        (1234.4, "$1,234"),
        (0.0, "$0"),
        (-0.25, "-$0.25"),
        (math.nan, "unpriced"),
    ],
)
def test_dollar_formatting(value: float, text: str) -> None:
    """Dollar labels keep two significant figures for tiny costs and say "unpriced" for NaN, never $0."""
    assert _format_usd(value) == text


# -- attempts_frame ------------------------------------------------------------------------------------------


def test_attempts_frame_has_one_row_per_attempt() -> None:
    """Each span is a row numbered from 1, with UTC times; cache hits add none; a running span has NaT."""
    records = [
        call("r1", "fixer", status="succeeded", spans=[(0, 1, "APICallError"), (2, 3, "ok")]),
        call("r2", "fixer", status="cached", latency=0.001),
        call("r3", "reviewer", status="running", spans=[(1, None, "running")]),
    ]
    frame = attempts_frame(records)
    assert tuple(frame.columns) == ATTEMPT_COLUMNS
    assert frame["run_id"].tolist() == ["r1", "r1", "r3"]
    assert frame["attempt"].tolist() == [1, 2, 1]
    assert frame["outcome"].tolist() == ["APICallError", "ok", "running"]
    assert frame["start"].dt.tz is not None
    assert str(frame["start"].dt.tz) == "UTC"
    assert frame["start"].iloc[1] == pd.Timestamp(T0 + 2, unit="s", tz="UTC")
    assert pd.isna(frame["end"].iloc[2])
    assert frame["status"].tolist() == ["succeeded", "succeeded", "running"]
    assert not frame["cached"].any()


def test_attempts_frame_of_nothing_is_empty_but_typed() -> None:
    """No records give an empty frame with the same columns and datetime dtypes, ready to plot."""
    frame = attempts_frame([])
    assert tuple(frame.columns) == ATTEMPT_COLUMNS
    assert frame.empty
    assert isinstance(frame["start"].dtype, pd.DatetimeTZDtype)


# -- latency -------------------------------------------------------------------------------------------------


def test_latency_boxes_agents_and_separates_cache_hits() -> None:
    """One box per agent with real calls, agents labelled with counts, and cache hits in their own series."""
    frame = frame_of(
        [
            call("1", "alpha", latency=2.0),
            call("2", "alpha", latency=4.0),
            call("3", "alpha", status="cached", latency=0.002),
            call("4", "beta", latency=1.0),
            call("5", "beta", status="failed", latency=3.0),
            call("6", "gamma", status="cached", latency=0.003),  # only cache hits: no box
            call("7", "beta", status="refused", latency=0.0),  # never ran: not plotted
        ]
    )
    ax = render(plot_latency(frame))
    assert ytick_labels(ax) == ["alpha (n=3)", "beta (n=2)", "gamma (n=1)"]
    assert len(ax.patches) == 2  # the boxes (patch_artist)
    assert legend_labels(ax) == ["succeeded", "failed", "cache hit"]
    points = {c.get_label(): c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)}
    assert sorted(points["succeeded"][:, 0].tolist()) == [1.0, 2.0, 4.0]
    assert points["failed"][:, 0].tolist() == [3.0]
    assert sorted(points["cache hit"][:, 0].tolist()) == [0.002, 0.003]
    assert "(s)" in ax.get_xlabel()
    assert ax.get_title() == (
        "Latency by agent · 4 calls, 2 cache hits\n1 call of 7 not drawn (unfinished or never sent)"
    )


def test_latency_without_finished_calls_says_so() -> None:
    """A frame whose calls are all still running draws a message, not an empty box plot."""
    ax = render(plot_latency(frame_of([call("1", status="running", spans=[(0, None, "running")])])))
    assert "no finished calls yet" in texts(ax)


# -- cost ----------------------------------------------------------------------------------------------------


def cost_frame() -> pd.DataFrame:
    return frame_of(
        [
            call("1", "planner", model="claude-opus-4-7", cost=0.25),
            call("2", "planner", model="claude-opus-4-7", status="cached", saved=0.25),
            call("3", "fixer", model="claude-haiku-4-5", cost=0.0012),
            call("4", "fixer", model=UNPRICED_MODEL, cost=math.nan),
            call("5", "fixer", model=UNPRICED_MODEL, cost=math.nan),
        ]
    )


def test_cost_bars_per_agent_and_model_with_savings() -> None:
    """Two bars (spent, saved) per "agent · model", largest spend on top, labelled in readable dollars."""
    ax = render(plot_cost(cost_frame()))
    assert ytick_labels(ax) == [
        "planner · claude-opus-4-7",
        "fixer · claude-haiku-4-5",
        f"fixer · {UNPRICED_MODEL}",
    ]
    spent, saved = ax.containers
    assert [bar.get_width() for bar in spent] == [0.25, 0.0012, 0.0]
    assert [bar.get_width() for bar in saved] == [0.25, 0.0, 0.0]
    assert len(ax.patches) == 6
    labels = texts(ax)
    assert "$0.25" in labels
    assert "$0.0012" in labels
    assert legend_labels(ax)[:2] == ["spent", "saved by cache hits"]
    assert ax.xaxis.get_major_formatter()(0.005, 0) == "$0.005"


def test_cost_labels_nan_as_unpriced_never_zero() -> None:
    """NaN-cost calls are labelled "unpriced" on their bar, in the title and the legend; no "$0" for them."""
    ax = render(plot_cost(cost_frame()))
    labels = texts(ax)
    assert "unpriced (2 calls)" in labels
    assert "$0" not in labels
    assert "2 unpriced" in ax.get_title()
    assert any(label.startswith("unpriced: 2 calls") for label in legend_labels(ax))
    assert "spent $0.25" in ax.get_title()  # rendered literally: the title does not turn "$...$" into math
    assert not ax.title.get_parse_math()


def test_cost_when_nothing_is_priced() -> None:
    """A session only on unpriced models says so on the axis instead of showing a $0 scale."""
    frame = frame_of(
        [call("1", model=UNPRICED_MODEL, cost=math.nan), call("2", model=UNPRICED_MODEL, cost=math.nan)]
    )
    ax = render(plot_cost(frame))
    assert "nothing priced" in ax.get_xlabel()
    assert "unpriced (2 calls)" in texts(ax)


def test_cost_of_an_unpriced_cache_hit_saving() -> None:
    """A cache hit of an unpriced model saved an unknown amount: its saving is labelled unpriced too."""
    frame = frame_of([call("1", model=UNPRICED_MODEL, status="cached", saved=math.nan)])
    ax = render(plot_cost(frame))
    assert texts(ax).count("unpriced (1 call)") == 1
    assert "1 unpriced" in ax.get_title()


# -- cache ---------------------------------------------------------------------------------------------------


def hit_rate_line(ax: Axes) -> np.ndarray:
    (line,) = [line for line in ax.lines if line.get_label() == "cumulative hit rate"]
    return np.asarray(line.get_ydata(), dtype=float)


def test_cache_hit_rate_is_cumulative_over_final_calls() -> None:
    """3 hits in 4 counted calls end at 0.75; refused and unfinished calls are not counted."""
    frame = frame_of(
        [
            call("1"),
            call("2", status="refused", latency=0.0),
            call("3", status="cached", latency=0.001),
            call("4", status="running", spans=[(0, None, "running")]),
            call("5", status="cached", latency=0.001),
            call("6", status="cached", latency=0.001),
        ]
    )
    ax = render(plot_cache(frame))
    assert hit_rate_line(ax) == pytest.approx([0.0, 0.5, 2 / 3, 0.75])
    assert ax.get_title() == (
        "Response cache hit rate · 75%: 3 hits in 4 calls\n2 calls not counted (refused or unfinished)"
    )
    (rug,) = [line for line in ax.lines if line.get_label() == "cache hit"]
    assert list(rug.get_xdata()) == [2.0, 3.0, 4.0]


def test_cache_with_no_hits_draws_a_flat_line() -> None:
    """A session with zero cache hits draws a 0% line and no hit marks."""
    ax = render(plot_cache(frame_of([call("1"), call("2"), call("3", status="failed")])))
    assert hit_rate_line(ax).tolist() == [0.0, 0.0, 0.0]
    assert [line.get_label() for line in ax.lines] == ["cumulative hit rate"]
    assert ax.get_title() == "Response cache hit rate · 0%: 0 hits in 3 calls"


def cache_stats() -> CacheStats:
    return CacheStats(
        backend="disk",
        hits=14,
        misses=45,
        hit_rate=14 / 59,
        entries=40,
        size_bytes=1000,
        max_size_bytes=10_000,
        evictions=3,
        expirations=1,
        integrity_failures=2,
        cost_saved_usd=0.4,
        time_saved_s=30.0,
        memory_entries=10,
        memory_size_bytes=100,
    )


@pytest.mark.parametrize(
    "stats",
    [cache_stats(), {"hits": 14, "misses": 45, "evictions": 3, "expirations": 1, "integrity_failures": 2}],
    ids=["CacheStats", "mapping"],
)
def test_cache_stats_are_listed_beside_the_plot(stats: Any) -> None:
    """Given stats (object or mapping), a key to the right of the axes lists the five counters."""
    ax = render(plot_cache(frame_of(session(30)), stats=stats))
    assert legend_labels(ax) == [
        "hits: 14",
        "misses: 45",
        "evictions: 3",
        "expirations: 1",
        "integrity failures: 2",
    ]
    assert not overlaps(ax)


def test_cache_stats_missing_a_counter_is_refused() -> None:
    """Stats without one of the counters raise a TypeError naming what is needed, not a silent zero."""
    with pytest.raises(TypeError, match="integrity_failures"):
        plot_cache(frame_of([call("1")]), stats={"hits": 1, "misses": 2, "evictions": 0, "expirations": 0})


def test_cache_stats_still_shown_before_any_call() -> None:
    """An empty session with stats shows the message and the counters (a warm disk cache has history)."""
    ax = render(plot_cache(frame_of([]), stats=cache_stats()))
    assert "no runs yet" in texts(ax)
    assert legend_labels(ax)[0] == "hits: 14"


# -- timeline ------------------------------------------------------------------------------------------------


def test_timeline_peak_concurrency_from_known_intervals() -> None:
    """Intervals [0,10) [2,5) [4,8) [5,6) [9,12) peak at 3 (touching ends do not overlap); hits don't count.

    A naive count that let [2,5) and [5,6) touch would say 4.
    """
    frame = frame_of(
        [
            call("a", start=0, latency=10),
            call("b", start=2, latency=3),
            call("c", start=4, latency=4),
            call("d", start=5, latency=1),
            call("e", start=9, latency=3),
            call("hit", status="cached", start=4.5, latency=0.01),
            call("ref", status="refused", start=4.6, latency=0.0),
        ]
    )
    ax = render(plot_timeline(frame))
    assert ax.get_title() == "Timeline of 7 calls · peak concurrency 3"
    assert len(bars_of(ax).get_paths()) == 5


@pytest.mark.parametrize(
    ("starts", "ends", "peak"),
    [
        ([], [], 0),
        ([0], [1], 1),
        ([0, 1], [1, 2], 1),
        ([0, 0, 0], [1, 1, 1], 3),
        ([0, 2, 4, 5, 9], [10, 5, 8, 6, 12], 3),
        ([0, 1], [math.nan, 2], 1),
    ],
)
def test_peak_concurrency_table(starts: list[float], ends: list[float], peak: int) -> None:
    """Peak overlap of half-open intervals, ignoring unfinished (NaN) ones."""
    assert _peak_concurrency(starts, ends)[2] == peak


def test_timeline_rows_follow_start_order_with_x_in_seconds() -> None:
    """Rows are ordered by start, labelled with the agent; x is seconds since the first start."""
    frame = frame_of(
        [
            call("1", "late", start=5.0, latency=1.0),
            call("2", "early", start=1.0, latency=2.0),
            call("3", "hit", status="cached", start=3.0, latency=0.001),
        ]
    )
    ax = render(plot_timeline(frame))
    assert ytick_labels(ax) == ["early", "hit", "late"]
    bars = bars_of(ax)
    extents = sorted((p.vertices[:, 0].min(), p.vertices[:, 0].max()) for p in bars.get_paths())
    assert extents == [(0.0, 2.0), (4.0, 5.0)]
    (diamonds,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert diamonds.get_offsets().tolist() == [[2.0, 1.0]]
    assert ax.get_xlabel() == "seconds since the first call started"
    assert "cache hit" in legend_labels(ax)


def test_timeline_attempts_show_retries_and_backoff() -> None:
    """With an attempts frame each attempt is a segment: retried failures in the warning colour, a dotted
    backoff line between attempts, and a call's final failure in the failed colour."""
    records = [
        call(
            "ok",
            start=0,
            latency=6,
            spans=[(0, 1, "APICallError"), (2, 3, "AttemptTimeoutError"), (4, 6, "ok")],
        ),
        call(
            "bad",
            "fixer",
            status="failed",
            start=1,
            latency=3,
            spans=[(1, 2, "APICallError"), (3, 4, "APICallError")],
        ),
        call("plain", start=2, latency=1),
    ]
    frame = frame_of(records)
    ax = render(plot_timeline(frame, attempts=attempts_frame(records)))
    colours = [tuple(c) for c in bars_of(ax).get_facecolors()]
    assert len(colours) == 6  # 3 + 2 attempts, and one attempt of "plain"
    assert colours.count(WARNING) == 3
    assert colours.count(FAILED) == 1
    assert colours.count(SUCCEEDED) == 2
    (gaps,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert sorted(seg[:, 0].tolist() for seg in gaps.get_segments()) == [[1, 2], [2, 3], [3, 4]]
    assert {"attempt failed", "failed", "backoff"} <= set(legend_labels(ax))


def test_timeline_calls_without_attempt_rows_keep_one_bar() -> None:
    """Calls missing from the attempts frame still get a whole bar; attempts of unknown calls are ignored."""
    records = [call("a", start=0, latency=2), call("b", start=1, latency=2)]
    attempts = attempts_frame([records[0], call("stranger", start=0, latency=9)])
    ax = render(plot_timeline(frame_of(records), attempts=attempts))
    assert len(bars_of(ax).get_paths()) == 2
    assert ax.get_xlim()[1] < 9


def test_timeline_unfinished_call_runs_to_the_right_edge() -> None:
    """A call still running (no finish time) is drawn up to the latest known time, in the running colour."""
    frame = frame_of(
        [call("a", start=0, latency=8), call("b", status="running", start=2, spans=[(2, None, "running")])]
    )
    ax = render(plot_timeline(frame))
    ends = sorted(p.vertices[:, 0].max() for p in bars_of(ax).get_paths())
    assert ends == [8.0, 8.0]
    assert "running" in legend_labels(ax)


def test_timeline_of_2000_calls_is_fast_and_bounded() -> None:
    """2,000 calls with retries draw as a handful of artists, quickly, with row labels hidden."""
    records = session(2000, slots=16)
    frame = frame_of(records)
    began = time.perf_counter()
    ax = render(plot_timeline(frame, attempts=attempts_frame(records)))
    elapsed = time.perf_counter() - began
    assert len(ax.collections) <= 4
    assert not ax.patches
    assert not ax.lines
    assert not ax.texts
    assert len(ax.get_children()) < 40
    assert ytick_labels(ax) == []
    assert ax.get_ylabel() == "2,000 calls, in order of start"
    assert "peak concurrency" in ax.get_title()
    # A generous sanity bound (the artist counts above are the real check): one artist per call would take
    # minutes here; the bounded drawing takes about a second, several on a loaded machine.
    assert elapsed < 20.0, elapsed


def test_timeline_labels_rows_up_to_forty_calls() -> None:
    """Up to 40 calls every row is labelled; past that the labels are replaced by a count."""
    ax = render(plot_timeline(frame_of(call(str(i), start=i, latency=1) for i in range(40))))
    assert len(ytick_labels(ax)) == 40
    ax = render(plot_timeline(frame_of(call(str(i), start=i, latency=1) for i in range(41))))
    assert ytick_labels(ax) == []


def test_frame_columns_are_the_records_columns() -> None:
    """The synthetic frames used here are real runs frames (guards the test data against drift)."""
    assert tuple(frame_of(session(5)).columns) == FRAME_COLUMNS


# -- layout, themes, palette -------------------------------------------------------------------------------


def _boxes(ax: Axes) -> list[tuple[str, Any]]:
    """The window extents of every element that must not overlap another: titles, axis labels, tick labels,
    free texts, the legend, and the data area of each child axes."""
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    found: list[tuple[str, Any]] = []
    for axes in (ax, *ax.child_axes):
        items = [axes.title, axes.xaxis.label, axes.yaxis.label, *axes.texts]
        items += [t for t in axes.get_xticklabels() if _within(t.get_position()[0], axes.get_xlim())]
        items += [t for t in axes.get_yticklabels() if _within(t.get_position()[1], axes.get_ylim())]
        found += [(f"text {t.get_text()!r}", t.get_window_extent(renderer)) for t in items if t.get_text()]
    legend = ax.get_legend()
    if legend is not None:
        found.append(("legend", legend.get_window_extent(renderer)))
    return found


def _within(value: float, limits: tuple[float, float]) -> bool:
    """A tick at `value` is drawn only inside the view limits (matplotlib keeps labels for ticks outside)."""
    return min(limits) - 1e-9 <= value <= max(limits) + 1e-9


def overlaps(ax: Axes) -> list[str]:
    """Pairs of elements whose boxes intersect (by more than a pixel), and any legend over the data area."""
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = _boxes(ax)
    clashes = [
        f"{a} / {b}"
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.x0 + 1 < box_b.x1
        and box_b.x0 + 1 < box_a.x1
        and box_a.y0 + 1 < box_b.y1
        and box_b.y0 + 1 < box_a.y1
    ]
    data = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    if legend is not None and legend.get_window_extent(renderer).overlaps(data):
        clashes.append("legend over the data")
    figure = ax.figure.bbox
    clashes += [f"{name} outside the figure" for name, box in boxes if box.x1 > figure.x1 + 1 or box.x0 < -1]
    return clashes


@pytest.mark.parametrize("calls", [3, 6, 60, 1000])
@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_nothing_overlaps_from_3_to_1000_calls(plot: Callable[..., Axes], calls: int) -> None:
    """Titles, labels, tick labels, legends and strips never cover each other or the data, at any size."""
    records = session(calls, seed=calls)
    frame = frame_of(records)
    if plot is plot_timeline:
        ax = render(plot(frame, attempts=attempts_frame(records)))
    elif plot is plot_cache:
        ax = render(
            plot(
                frame,
                stats={n: 7 for n in ("hits", "misses", "evictions", "expirations", "integrity_failures")},
            )
        )
    else:
        ax = render(plot(frame))
    assert overlaps(ax) == []


@pytest.mark.parametrize("calls", [6, 1000])
def test_title_counts_every_call_of_the_run(calls: int) -> None:
    """Each title accounts for all the run's calls: those drawn are counted, the others said left out."""
    records = session(calls, seed=calls)
    frame = frame_of(records)
    latency = render(plot_latency(frame)).get_title()
    counted = re.findall(r"([\d,]+) (?:calls?|cache hits?)(?! of)", latency.split("\n")[0])
    left_out = re.findall(r"([\d,]+) calls? of ([\d,]+) not drawn", latency)
    assert (
        sum(int(n.replace(",", "")) for n in counted) + sum(int(n.replace(",", "")) for n, _ in left_out)
        == calls
    ), latency
    cache = render(plot_cache(frame)).get_title()
    (in_calls,) = re.findall(r"in ([\d,]+) calls?", cache)
    not_counted = re.findall(r"([\d,]+) calls? not counted", cache)
    assert int(in_calls.replace(",", "")) + sum(int(n) for n in not_counted) == calls, cache
    assert f"{calls:,} calls" in render(plot_cost(frame)).get_title()
    assert f"{calls:,} calls" in render(plot_timeline(frame)).get_title()


@pytest.mark.parametrize("theme", ["auto", "light", "dark"])
@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_theme_sets_background_and_readable_text(plot: Callable[..., Axes], theme: str) -> None:
    """ "auto" is transparent; light and dark paint their background; no text is left in default black on
    the dark background."""
    from matplotlib.colors import same_color
    from matplotlib.text import Text

    ax = render(plot(frame_of(session(20)), theme=theme))
    alpha = ax.figure.patch.get_alpha()
    if theme == "auto":
        assert alpha == 0.0
    else:
        assert alpha == 1.0
        expected = "#ffffff" if theme == "light" else "#1e1e1e"
        assert same_color(ax.figure.patch.get_facecolor(), expected)
    if theme == "dark":
        dark_text = [
            t.get_text()
            for t in ax.figure.findobj(Text)
            if t.get_text() and t.get_visible() and same_color(t.get_color(), "black")
        ]
        assert dark_text == []


def test_unknown_theme_is_refused() -> None:
    """A misspelt theme is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="auto, light, dark"):
        plot_latency(frame_of(session(5)), theme="sepia")  # type: ignore[arg-type]


def test_the_live_table_and_the_charts_share_the_status_colours() -> None:
    """The timeline draws a succeeded call in the same colour as the live table's badge for it."""
    from claude_force_nb._style import status_badge

    ax = render(plot_timeline(frame_of([call("a", start=0, latency=1)])))
    assert [tuple(c) for c in bars_of(ax).get_facecolors()] == [SUCCEEDED]
    assert STATUS_COLOURS["succeeded"] in status_badge("succeeded")


@pytest.mark.parametrize("theme", ["auto", "dark"])
def test_chart_figure_png_is_transparent_or_themed(theme: str) -> None:
    """`%agent plot` and the panel draw on `chart_figure`: its PNG's background is transparent for "auto"
    (no white block on a dark notebook) and the theme's colour for "dark"."""
    import io

    from matplotlib.colors import to_rgba
    from matplotlib.image import imread

    from claude_force_nb._display import figure_png
    from claude_force_nb._plots import chart_figure

    figure = chart_figure((9, 5), theme)  # type: ignore[arg-type]
    plot_cost(frame_of(session(6)), ax=figure.subplots(), theme=theme)  # type: ignore[arg-type]
    corner = imread(io.BytesIO(figure_png(figure)))[0, 0]
    if theme == "auto":
        assert corner[3] == 0.0
    else:
        assert tuple(corner) == pytest.approx(to_rgba("#1e1e1e"), abs=1 / 255)
