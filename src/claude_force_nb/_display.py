"""What a notebook shows: the `AgentRun` result object, and live views updated while calls run.

A live view sends what changed, at a bounded rate, whatever the number of calls (every byte crosses the
kernel-to-browser link, which may be a remote server, Binder or a tunnel, and the last copy is saved in the
notebook):

- The batch table (`TableView`, and the panel's Calls tab) is a display handle redrawn at most
  `TABLE_INTERVAL_S` apart from orchestrator events. Each redraw holds a totals line and at most
  `MAX_VISIBLE_ROWS` rows: failures, calls in flight and the latest finished, with the rest summarised as
  counts. So a redraw has a size bounded by a constant and bytes per second do not grow with the batch.
  Bookkeeping is incremental (counts kept per event), so a redraw also costs the same at 10 or 10,000 calls.
  When the batch ends, the table is drawn once more: every row for a small batch, counts and the failures for
  a large one (the full table is `.to_frame()` of the result).
- A streamed answer (`StreamView`) in a blocking cell is appended as stream output: each new piece of text
  is sent once (batched, `STREAM_INTERVAL_S` apart), then the cell's output is replaced once by the rendered
  answer. Bytes sent stay near twice the answer's length instead of growing with its square. A background
  run (`--bg`) cannot append (its cell may no longer be the one receiving output), so it redraws one display
  handle instead, just as throttled.

Updates are throttled on the event loop (`call_later`), never `print`ed from background tasks.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._pricing import format_cost
from ._records import RunRecord
from ._results import AgentResult
from ._style import MATH_IGNORE, escape_markdown_math, math_safe_markdown, small_note, status_badge

if TYPE_CHECKING:
    import pandas as pd

    from ._events import RunEvent

__all__ = [
    "MAX_VISIBLE_ROWS",
    "PROVENANCE_KEY",
    "PROVENANCE_MAX_CALLS",
    "STREAM_INTERVAL_S",
    "TABLE_INTERVAL_S",
    "AgentRun",
    "BatchTable",
    "StreamView",
    "TableView",
    "Throttle",
    "figure_png",
    "format_cost",
    "refresh_interval",
]

_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_MIN_INTERVAL_S = 0.1
PROVENANCE_KEY = "claude_force_nb"
"""The key of the provenance dict in an output's metadata (nbformat keeps it in the saved notebook)."""
PROVENANCE_MAX_CALLS = 50
"""Calls a provenance lists one by one; a larger run's others are counted (every row: `%agent runs N`), so
the saved notebook of a 1,000-call run stays small."""
MAX_VISIBLE_ROWS = 20
"""Rows a live table draws at most; a batch of up to this many calls shows every row."""
TABLE_INTERVAL_S = 0.25
"""Seconds between redraws of a table with more rows than `MAX_VISIBLE_ROWS` (smaller ones: 0.1 s)."""
STREAM_INTERVAL_S = 0.2
"""Seconds between pieces of streamed text sent to the front end."""


def figure_png(figure: Any, *, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes (rendered with Agg whatever the backend)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class AgentRun:
    """The result of one `%%agent` cell: one or more calls, shown per the cell's `-f` format.

    `.text` is the answer (several answers are joined under agent headings), `.results` the AgentResults,
    `.to_frame()` a row per call (for `--inputs`, the input columns first), `.value` the parsed JSON (format
    json) and `.code` the first fenced code block (format code).
    """

    def __init__(
        self,
        results: Sequence[AgentResult],
        *,
        kind: str = "single",
        fmt: str = "markdown",
        inputs: Sequence[dict[str, Any]] | None = None,
        index: Any = None,
        workflow: str | None = None,
        elapsed_s: float = math.nan,
        batch_id: str | None = None,
        cell: int | None = None,
    ) -> None:
        self.results = list(results)
        self.batch_id = batch_id  # the id the cell's calls share in the run log (`%agent runs ID`)
        self.cell = cell  # the notebook's execution count of the cell that ran it
        self.kind = kind
        self.format = fmt
        self.inputs = list(inputs) if inputs is not None else None
        self.index = index  # the --inputs DataFrame's index (row labels of to_frame)
        self.workflow = workflow
        self.elapsed_s = elapsed_s

    # -- content ---------------------------------------------------------------------------------------

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failed(self) -> list[AgentResult]:
        return [r for r in self.results if not r.success]

    @property
    def text(self) -> str:
        if len(self.results) == 1 or self.kind == "workflow":
            last = [r for r in self.results if r.success]
            return last[-1].output if last else ""
        return "\n\n".join(f"## {r.agent_name}\n\n{r.output if r.success else r.error}" for r in self.results)

    @property
    def value(self) -> Any:
        """The answer parsed as JSON (the first fenced block if the answer is not bare JSON); for a fan-out,
        a dict of each agent's parsed answer. ValueError (naming the agent) if an answer is not JSON."""
        if self.kind == "fanout":
            parsed = {}
            for r in self.results:
                try:
                    parsed[r.agent_name] = parse_json_answer(r.output if r.success else "")
                except ValueError:
                    raise ValueError(f"{r.agent_name}'s answer is not JSON") from None
            return parsed
        return parse_json_answer(self.text)

    @property
    def code(self) -> str:
        """The first fenced code block of the answer (the whole answer if there is none)."""
        block = _CODE_BLOCK.search(self.text)
        return block.group(1).rstrip("\n") if block else self.text

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.results)

    def summary(self) -> str:
        """calls, total cost (and savings), wall time, cache hit rate."""
        n = len(self.results)
        hits = sum(r.cached for r in self.results)
        saved = sum(r.cost_saved_usd for r in self.results)
        parts = [f"{n} call{'s' if n != 1 else ''}", format_cost(self.cost_usd)]
        if saved:
            parts.append(f"saved {format_cost(saved)}")
        if not math.isnan(self.elapsed_s):
            parts.append(f"{self.elapsed_s:.2f} s wall")
        parts.append(f"cache hit rate {hits / n:.0%}" if n else "no calls")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return " · ".join(parts)

    def to_frame(self) -> pd.DataFrame:
        """One row per call (for `--inputs`, the input columns first), as a pandas DataFrame whose notebook
        HTML MathJax leaves alone (answers with `$` amounts stay text; see `_frames`)."""
        from ._frames import MathSafeFrame

        rows = []
        for i, r in enumerate(self.results):
            row: dict[str, Any] = (
                dict(self.inputs[i]) if self.inputs is not None and i < len(self.inputs) else {}
            )
            row.update(
                {
                    "agent": r.agent_name,
                    "status": r.status,
                    "output": r.output,
                    "cost_usd": r.cost_usd,
                    "cost_is_estimate": r.cost_is_estimate,
                    "latency_s": r.latency_s,
                    "cached": r.cached,
                    "error": r.error,
                }
            )
            rows.append(row)
        index = self.index if self.index is not None and len(self.index) == len(rows) else None
        return MathSafeFrame(rows, index=index)

    # -- display ---------------------------------------------------------------------------------------

    def _markdown(self) -> str:
        """The Markdown view: answers as written (dollars never typeset as maths, unless the format is
        markdown+math), failures and per-step summaries in our words, the summary line last."""
        math = self.format == "markdown+math"

        def answer(text: str) -> str:
            return text if math else escape_markdown_math(text)

        if len(self.results) == 1:
            r = self.results[0]
            body = answer(r.output) if r.success else _failure(r.agent_name, r.error or r.status)
        elif self.kind == "workflow":
            steps = "\n".join(
                f"{i}. {escape_markdown_math(r.summary())}" for i, r in enumerate(self.results, 1)
            )
            body = f"**workflow {self.workflow}**\n\n{steps}\n\n---\n\n{answer(self.text)}"
        else:
            body = "\n\n".join(
                f"#### {r.agent_name}\n\n"
                + (answer(r.output) if r.success else _failure("", r.error or r.status))
                for r in self.results
            )
        note = small_note(self.summary())
        if math:  # the answers' maths is typeset; our own text is kept out of it
            return f"{body}\n\n{note}"
        return math_safe_markdown(f"{body}\n\n{note}")

    def provenance(self) -> dict[str, Any]:
        """Where the answers came from, saved with the output in the notebook file: the cell, the batch id
        and per call its agent, model, run id, status, cost, cache key and whether it was served from the
        cache (and in replay mode); past `PROVENANCE_MAX_CALLS` calls, the rest are counted by status.
        JSON-safe: an unpriced cost is None."""

        def money(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 10)

        listed = self.results[:PROVENANCE_MAX_CALLS]
        marks: dict[str, Any] = {
            "cell": self.cell,
            "batch_id": self.batch_id,
            "kind": self.kind,
            "workflow": self.workflow,
            "cost_usd": money(self.cost_usd),
            "calls": [
                {
                    "agent": r.agent_name,
                    "model": r.model,
                    "run_id": r.run_id,
                    "status": r.status,
                    "cost_usd": money(r.cost_usd),
                    "cache_key": r.metadata.get("cache_key"),
                    "cached": r.cached,
                    "replayed": bool(r.metadata.get("replayed", False)),
                }
                for r in listed
            ],
        }
        if len(self.results) > len(listed):  # a large run: the first calls, the rest counted
            rest = self.results[len(listed) :]
            marks["calls_omitted"] = len(rest)
            marks["omitted_by_status"] = dict(Counter(r.status for r in rest))
        return marks

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The view for the cell's `-f` format, with `provenance()` as the output's metadata."""
        return self._views(), {PROVENANCE_KEY: self.provenance()}

    def _views(self) -> dict[str, Any]:
        plain = self.text
        if self.kind == "inputs":
            frame = _shortened(self.to_frame())
            return {"text/html": _frame_html(frame), "text/plain": frame.to_string(max_rows=_FRAME_ROWS)}
        if self.format == "text":
            return {"text/plain": plain}
        if self.format == "json":
            if self.kind == "fanout":
                return self._json_per_agent()
            try:
                return {"application/json": self.value, "text/plain": json.dumps(self.value, indent=2)}
            except ValueError:
                return self._as_text_with_note("the answer is not JSON")
        if self.format == "code":
            if _CODE_BLOCK.search(self.text) is None:
                return self._as_text_with_note("no fenced code block in the answer")
            return {"text/markdown": f"```python\n{self.code}\n```", "text/plain": self.code}
        return {"text/markdown": self._markdown(), "text/plain": plain}

    def _as_text_with_note(self, why: str) -> dict[str, Any]:
        """The answer as it was written (not highlighted as code, not parsed), with a note saying why."""
        note = f"{why}; shown as text"
        return {
            "text/markdown": f"{self._markdown()}\n\n{small_note(note)}",
            "text/plain": f"{self.text}\n\n({note})",
        }

    def _json_per_agent(self) -> dict[str, Any]:
        """A fan-out with -f json: one JSON block per agent (or its text, with a note, when not JSON)."""
        sections, plain, values = [], [], {}
        for r in self.results:
            try:
                value = parse_json_answer(r.output if r.success else "")
            except ValueError:
                reason = r.output if r.success else f"failed: {r.error or r.status}"
                sections.append(f"#### {r.agent_name}\n\n{escape_markdown_math(reason)}\n\n")
                sections[-1] += small_note("not JSON; shown as text")
                plain.append(f"{r.agent_name}: (not JSON) {reason}")
                continue
            values[r.agent_name] = value
            dumped = json.dumps(value, indent=2, ensure_ascii=False)
            sections.append(f"#### {r.agent_name}\n\n```json\n{dumped}\n```")
            plain.append(f"{r.agent_name}:\n{dumped}")
        markdown = math_safe_markdown("\n\n".join(sections)) + "\n\n" + small_note(self.summary())
        return {"text/markdown": markdown, "text/plain": "\n\n".join(plain)}

    def __repr__(self) -> str:
        return f"AgentRun({self.summary()})"


def parse_json_answer(text: str) -> Any:
    """An answer as JSON: the whole text, else its first fenced block; ValueError if neither parses."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        block = _CODE_BLOCK.search(text)
        if block is None:
            raise ValueError("the answer is not JSON") from None
        return json.loads(block.group(1))


def _failure(agent: str, reason: str) -> str:
    who = f"{agent} failed" if agent else "failed"
    return f"**{who}:** {escape_markdown_math(reason)}"


_FRAME_ROWS = 20
_FRAME_CELL_CHARS = 80


def _shortened(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy for display (and the saved notebook) with long text cells cut: `.to_frame()` has them whole."""
    frame = frame.copy()
    limit = _FRAME_CELL_CHARS
    for column in frame.select_dtypes(include=["object", "string"]).columns:
        frame[column] = [
            v[: limit - 1] + "…" if isinstance(v, str) and len(v) > limit else v for v in frame[column]
        ]
    return frame


def _frame_html(frame: pd.DataFrame) -> str:
    """A frame as HTML that MathJax skips (pandas adds the `mathjax_ignore` class)."""
    import pandas as pd

    with pd.option_context("display.html.use_mathjax", False):
        return str(frame.to_html(max_rows=_FRAME_ROWS))


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (rich outputs reach a front end), not terminal IPython."""
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def can_update_in_place() -> bool:
    """Whether an output can be redrawn in place (`update_display`).

    A kernel's front ends apply updates (JupyterLab, Notebook, VS Code, Colab); terminal IPython cannot take
    an output back and prints every update again (as `<IPython.core.display.Markdown object>` lines), so
    there live views print plain text as it arrives and nothing else. Views take `updates=` to force either
    path (tests drive both).
    """
    return in_kernel()


class Throttle:
    """Call `render` at most once per `interval_s`, always once more after the last poke."""

    def __init__(self, render: Callable[[], None], interval_s: float) -> None:
        self._render = render
        self.interval_s = interval_s
        self._last = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.renders = 0

    def poke(self) -> None:
        if self._handle is not None:
            return
        wait = self._last + self.interval_s - time.monotonic()
        if wait <= 0:
            self._fire()
            return
        try:
            self._handle = asyncio.get_running_loop().call_later(wait, self._fire)
        except RuntimeError:
            self._fire()

    def _fire(self) -> None:
        self._handle = None
        self._last = time.monotonic()
        self.renders += 1
        self._render()

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._fire()

    def cancel(self) -> None:
        """Drop a pending call (the owner draws its final state itself)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class StreamView:
    """One call's text, shown as it arrives (see the module docstring: appended, or redrawn for `--bg`)."""

    def __init__(self, *, label: str = "", append: bool = True, updates: bool | None = None) -> None:
        from IPython.display import Markdown, display

        updates = can_update_in_place() if updates is None else updates
        self._markdown = Markdown
        self._label = label
        # Redrawing needs updates in place; without them (a terminal) the text is appended, --bg included.
        self._append = append or not updates
        self._parts: list[str] = []  # the text so far (redraw mode) or not yet sent (append mode)
        self.sent_chars = 0
        # One note that stays true while the text streams below it (no update needed at the first token).
        self._answering = small_note(f"{label or 'the agent'} is answering…")
        self._handle = display(Markdown(self._answering), display_id=True) if updates else None
        self._throttle = Throttle(self._update, STREAM_INTERVAL_S if append else _MIN_INTERVAL_S)

    def _update(self) -> None:
        if self._append:
            chunk = "".join(self._parts)
            self._parts.clear()
            if chunk:
                sys.stdout.write(chunk)
                self.sent_chars += len(chunk)
        elif self._handle is not None:
            text = "".join(self._parts)
            self._handle.update(self._markdown(math_safe_markdown(f"{text}{' ▌' if text else ''}")))

    def on_text(self, delta: str) -> None:
        self._parts.append(delta)
        self._throttle.poke()

    def on_event(self, event: RunEvent) -> None:
        if event.kind != "retrying":
            return
        note = f"retrying in {event.delay_s or 0:.1f} s after: {event.error}"
        if self._append:
            self._throttle.flush()
            if self.sent_chars:  # the next attempt starts the answer again, below a marker
                sys.stdout.write(f"\n\n[{note}]\n\n")
        else:
            self._parts.clear()
        if self._handle is not None:
            self._handle.update(self._markdown(small_note(note)))

    def finish(self, run: AgentRun) -> None:
        """Show the final rendering once, in place of the streamed text (see the module docstring)."""
        self._throttle.flush()
        if not self._append:
            if self._handle is not None:
                self._handle.update(run)
            return
        from IPython.display import clear_output, display

        sys.stdout.flush()
        if not in_kernel():
            # A terminal has already printed the text and cannot take it back: add the summary only.
            sys.stdout.write(f"\n{run.summary()}\n")
            return
        clear_output(wait=True)  # takes effect with the next output: no flicker, one final rendering
        bundle, metadata = run._repr_mimebundle_()
        if len(bundle) > 1:  # a rich rendering shows the text; the plain fallback need not carry it twice
            bundle["text/plain"] = repr(run)
        display(bundle, metadata=metadata, raw=True)


_COLUMNS = ("agent", "status", "progress", "attempts", "tokens", "cost", "latency", "cached")
_FAILED = frozenset({"failed", "refused", "cancelled"})
_IN_FLIGHT = frozenset({"running", "retrying"})
_STATUS_ORDER = ("succeeded", "cached", "failed", "refused", "cancelled", "running", "retrying", "queued")
_OTHER_STATES = ("running", "retrying", "queued", "failed", "refused", "cancelled")
# One style block per drawing instead of a style attribute on every cell: a row is ~4x smaller.
_TABLE_STYLE = (
    "<style>.cfnb-table table{font-size:12px}.cfnb-table td,.cfnb-table th{text-align:left;"
    "padding:0 8px 0 0}.cfnb-table td:first-child{white-space:nowrap}.cfnb-table progress{width:70px}"
    ".cfnb-reason,.cfnb-label{opacity:.85;font-size:11px}</style>"
)
_HEAD = "<thead><tr>" + "".join(f"<th>{c}</th>" for c in _COLUMNS) + "</tr></thead>"


class BatchTable:
    """The state of a batch of calls, fed by run events, drawn as an HTML table with a totals line.

    Shared by the magic's live table and the panel, so both show the same rows the same way. Counts and the
    visible rows are kept per event (see the module docstring), so `render()` costs the same for any batch.
    """

    def __init__(
        self,
        *,
        expected: int,
        title: str,
        max_rows: int = MAX_VISIBLE_ROWS,
        labels: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.title = title
        self.labels = labels or {}  # (agent, task) -> what the row is, under the agent (--inputs rows)
        self.expected = expected
        self.max_rows = max_rows
        self.records: dict[str, RunRecord] = {}
        self.started = time.time()
        self._status: dict[str, str] = {}
        self._counts: Counter[str] = Counter()
        self._in_flight: dict[str, None] = {}  # insertion-ordered set: oldest first
        self._failed: deque[str] = deque(maxlen=max_rows)  # the latest failures
        self._recent: deque[str] = deque(maxlen=max_rows)  # the latest other finished calls
        self._cost = 0.0
        self._hits = 0

    def on_event(self, event: RunEvent) -> None:
        record = event.record
        run_id, status = record.run_id, record.status
        self.records[run_id] = record
        old = self._status.get(run_id)
        if old == status:
            return
        if old is not None:
            self._counts[old] -= 1
        self._counts[status] += 1
        self._status[run_id] = status
        if status in _IN_FLIGHT:
            self._in_flight[run_id] = None
        else:
            self._in_flight.pop(run_id, None)
        if record.done:
            self._cost += record.cost_usd
            self._hits += record.cached
            (self._failed if status in _FAILED else self._recent).append(run_id)

    @property
    def done(self) -> int:
        """Calls that ended, however they ended (the first figure of the totals counts answers only)."""
        return sum(self._counts[s] for s in _STATUS_ORDER[:5])

    def counts(self) -> dict[str, int]:
        """Calls per status (every status, zeros included) as the events so far say."""
        return {status: self._counts[status] for status in _STATUS_ORDER}

    def totals(self) -> str:
        """`answered/expected done`, then each other state that has calls: a queued call is not counted as
        started, and a cancelled one is neither done nor failed."""
        return totals_line(
            self.counts(), expected=self.expected, cost=self._cost, elapsed=time.time() - self.started
        )

    def _visible(self) -> list[RunRecord]:
        """Every row while they fit; else failures, calls in flight, then the latest finished."""
        if len(self.records) <= self.max_rows:
            return list(self.records.values())
        chosen: dict[str, None] = {}
        for group in (reversed(self._failed), self._in_flight, reversed(self._recent)):
            for run_id in group:
                if len(chosen) >= self.max_rows:
                    break
                chosen[run_id] = None
        return [self.records[run_id] for run_id in chosen]

    def render(self, *, final: bool = False, hint: str = "") -> str:
        """The table as HTML. `final`: the batch is over; a large one shows counts and its failures only."""
        if final and len(self.records) > self.max_rows:
            shown = [self.records[run_id] for run_id in reversed(self._failed)]
        else:
            shown = self._visible()
        hidden = len(self.records) - len(shown)
        rows = "".join(map(self._row, shown))
        body = f"<table>{_HEAD}<tbody>{rows}</tbody></table>" if shown else ""
        if hidden:
            counts = self._counts.copy()
            for record in shown:
                counts[record.status] -= 1
            parts = [f"{counts[s]} {s}" for s in _STATUS_ORDER if counts[s] > 0]
            more = f"{hidden} more row{'s' if hidden != 1 else ''}: {', '.join(parts)}"
            if hint:
                more += f" · {hint}"
            body += f"<div class='cfnb-more'>{html.escape(more)}</div>"
        scroll = "" if final else "<div style='max-height:320px;overflow-y:auto'>"
        return (
            f"<div class='cfnb-table {MATH_IGNORE}'>{_TABLE_STYLE}<b>{html.escape(self.title)}</b> — "
            f"<span class='cfnb-totals'>{html.escape(self.totals())}</span>"
            f"{scroll}{body}{'</div>' if scroll else ''}</div>"
        )

    def _row(self, r: RunRecord) -> str:
        cells = row_cells(r, label=self.labels.get((r.agent, r.task), ""))
        return "<tr class='cfnb-row'><td>" + "</td><td>".join(cells) + "</td></tr>"


def totals_line(counts: Mapping[str, int], *, expected: int, cost: float, elapsed: float) -> str:
    """The totals of a batch from its calls per status: answers (cached among them) out of the expected
    calls, then every other state that has calls, the cost so far, the time and the hit rate."""
    answered = counts.get("succeeded", 0) + counts.get("cached", 0)
    parts = [f"{answered}/{expected} done"]
    if counts.get("cached", 0):
        parts[0] += f" ({counts['cached']} cached)"
    parts += [f"{counts[s]} {s}" for s in _OTHER_STATES if counts.get(s, 0)]
    parts += [format_cost(cost), f"{elapsed:.1f} s"]
    if answered:
        parts.append(f"hit rate {counts.get('cached', 0) / answered:.0%}")
    return " · ".join(parts)


def input_row_labels(
    calls: Sequence[Any], inputs: Sequence[Mapping[str, Any]], index: Any = None
) -> dict[tuple[str, str], str]:
    """For `--inputs`: each call's (agent, task) -> "row LABEL · col=value, …" (the frame's row label, else
    its position, and a preview of the row's values), so a live row says which input it is."""
    labels: dict[tuple[str, str], str] = {}
    names = list(index) if index is not None and len(index) == len(inputs) else range(len(inputs))
    for call, name, row in zip(calls, names, inputs, strict=False):
        preview = ", ".join(f"{k}={_short(str(v), 24)}" for k, v in row.items())
        labels.setdefault((call.agent, call.task), f"row {name} · {_short(preview, 60)}")
    return labels


def row_cells(r: RunRecord, *, label: str = "") -> tuple[str, ...]:
    """One call's cells for `_COLUMNS`, as HTML. A full progress bar means an answer; an ended call without
    one says why in its status cell (the whole reason on hover); a call never sent shows no latency.
    `label` (an --inputs row) goes under the agent's name."""
    answered = r.status in ("succeeded", "cached")
    status = status_badge(r.status)
    if r.done and not answered and r.error:
        reason = html.escape(r.error, quote=True)
        status += f"<br><span class='cfnb-reason' title='{reason}'>{html.escape(_short(r.error))}</span>"
    if answered:
        progress = "<progress value='1' max='1'></progress>"
    else:
        progress = "<progress></progress>" if r.status in _IN_FLIGHT else ""
    sent = r.attempts > 0 or r.cached
    tokens = r.input_tokens + r.cache_read_input_tokens + r.cache_creation_input_tokens
    agent = html.escape(r.agent)
    if label:
        agent += f"<br><span class='cfnb-label'>{html.escape(label)}</span>"
    return (
        agent,
        status,
        progress,
        str(r.attempts),
        f"{tokens}→{r.output_tokens}" if r.done and sent else "",
        ("≤" if r.cost_is_estimate else "") + format_cost(r.cost_usd) if r.done else "",
        f"{r.latency_s:.2f}s" if r.done and sent and not math.isnan(r.latency_s) else "",
        "✓" if r.cached else "",
    )


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def refresh_interval(expected: int) -> float:
    """Seconds between redraws: ten a second for a table that shows every row, four for a larger one (a
    drawing's size is bounded by `MAX_VISIBLE_ROWS`, so this bounds bytes per second whatever the batch)."""
    return _MIN_INTERVAL_S if expected <= MAX_VISIBLE_ROWS else TABLE_INTERVAL_S


class TableView:
    """A `BatchTable` shown in the cell's output and updated in place; `hint` ends a large final table."""

    def __init__(
        self,
        *,
        expected: int,
        title: str,
        hint: str = "",
        updates: bool | None = None,
        labels: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self.hint = hint
        self.table = BatchTable(expected=expected, title=title, labels=labels)
        self._throttle = Throttle(self._update, refresh_interval(expected))
        self.updates = can_update_in_place() if updates is None else updates
        # Without updates in place nothing is drawn live; the final table is shown once (in a kernel).
        self._handle = display(HTML(self.table.render()), display_id=True) if self.updates else None

    @property
    def renders(self) -> int:
        return self._throttle.renders

    def on_event(self, event: RunEvent) -> None:
        self.table.on_event(event)
        self._throttle.poke()

    def _update(self) -> None:
        if self._handle is not None:
            self._handle.update(self._html(self.table.render()))

    def finish(self) -> None:
        """Draw the final table once (complete for a small batch, compact for a large one)."""
        self._throttle.cancel()
        self._throttle.renders += 1
        final = self._html(self.table.render(final=True, hint=self.hint))
        if self._handle is not None:
            self._handle.update(final)
        elif in_kernel():  # a terminal would print "<IPython.core.display.HTML object>": the summary says it
            from IPython.display import display

            display(final)
