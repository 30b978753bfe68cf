"""What a notebook shows: the `AgentRun` result object, and live views updated in place while calls run.

Live views are display handles (`display(..., display_id=True)`) updated at a bounded rate from orchestrator
events, never `print`s into "whatever cell is running now", so they also work for background runs. Updates are
throttled on the event loop (`call_later`): at most ten a second, fewer for very large fan-outs, so a
1,000-call batch does not flood the front end.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._records import RunRecord
from ._results import AgentResult
from ._style import MATH_IGNORE, escape_markdown_math, math_safe_markdown, small_note, status_badge

if TYPE_CHECKING:
    import pandas as pd

    from ._events import RunEvent

__all__ = [
    "PROVENANCE_KEY",
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


def figure_png(figure: Any, *, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes (rendered with Agg whatever the backend)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def format_cost(value: float) -> str:
    """Dollars for display: NaN is 'unpriced', tiny amounts keep four decimals."""
    if math.isnan(value):
        return "unpriced"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


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
        import pandas as pd

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
        return pd.DataFrame(rows, index=index)

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
        cache (and in replay mode). JSON-safe: an unpriced cost is None."""

        def money(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 10)

        return {
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
                for r in self.results
            ],
        }

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The view for the cell's `-f` format, with `provenance()` as the output's metadata."""
        return self._views(), {PROVENANCE_KEY: self.provenance()}

    def _views(self) -> dict[str, Any]:
        plain = self.text
        if self.kind == "inputs":
            frame = self.to_frame()
            return {"text/html": _frame_html(frame), "text/plain": frame.to_string(max_rows=50)}
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


def _frame_html(frame: pd.DataFrame) -> str:
    """A frame as HTML that MathJax skips (pandas adds the `mathjax_ignore` class)."""
    import pandas as pd

    with pd.option_context("display.html.use_mathjax", False):
        return str(frame.to_html(max_rows=50))


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


class StreamView:
    """One call's text, shown as it arrives (markdown re-rendered at most ten times a second)."""

    def __init__(self, *, label: str = "") -> None:
        from IPython.display import Markdown, display

        self._markdown = Markdown
        self._label = label
        self._parts: list[str] = []
        self._status = "waiting for the first token…"
        self._handle = display(Markdown(self._render_text()), display_id=True)
        self._throttle = Throttle(self._update, _MIN_INTERVAL_S)

    def _render_text(self) -> str:
        text = "".join(self._parts)
        note = f"\n\n{small_note(self._status)}" if self._status else ""
        return math_safe_markdown(f"{text}{' ▌' if text else ''}") + note

    def _update(self) -> None:
        if self._handle is not None:
            self._handle.update(self._markdown(self._render_text()))

    def on_text(self, delta: str) -> None:
        if self._status.startswith("waiting") or self._status.startswith("retrying"):
            self._status = ""
        self._parts.append(delta)
        self._throttle.poke()

    def on_event(self, event: RunEvent) -> None:
        if event.kind == "retrying":
            self._parts.clear()  # the next attempt starts the answer again
            self._status = f"retrying in {event.delay_s or 0:.1f} s after: {event.error}"
            self._throttle.poke()

    def finish(self, run: AgentRun) -> None:
        """Replace the live text by the final rendering."""
        self._throttle.flush()
        if self._handle is not None:
            self._handle.update(run)


_COLUMNS = ("agent", "status", "progress", "attempts", "tokens", "cost", "latency", "cached")


class BatchTable:
    """The state of a batch of calls, fed by run events, rendered as an HTML table with a totals line.

    Shared by the magic's live table and the panel, so both show the same rows the same way.
    """

    def __init__(self, *, expected: int, title: str) -> None:
        self.title = title
        self.expected = expected
        self.records: dict[str, RunRecord] = {}
        self.streamed: dict[str, int] = {}
        self.started = time.time()

    def on_event(self, event: RunEvent) -> None:
        run_id = event.record.run_id
        self.records[run_id] = event.record
        if event.kind == "text" and event.text:
            self.streamed[run_id] = self.streamed.get(run_id, 0) + len(event.text)
        elif event.kind == "retrying":
            self.streamed.pop(run_id, None)

    def totals(self) -> str:
        records = list(self.records.values())
        done = [r for r in records if r.done]
        elapsed = time.time() - self.started
        if not done:
            return f"0/{self.expected} done · {len(records)} started · {elapsed:.1f} s"
        cost = sum(r.cost_usd for r in done)
        hits = sum(r.cached for r in done)
        failed = sum(r.status in ("failed", "refused", "cancelled") for r in done)
        return (
            f"{len(done)}/{self.expected} done · {len(records) - len(done)} in flight · {failed} failed · "
            f"{format_cost(cost)} · {elapsed:.1f} s · hit rate {hits / len(done):.0%}"
        )

    def render(self) -> str:
        rows = "".join(self._row(r) for r in self.records.values())
        head = "".join(f"<th style='text-align:left;padding-right:8px'>{c}</th>" for c in _COLUMNS)
        return (
            f"<div class='cfnb-table {MATH_IGNORE}'><b>{html.escape(self.title)}</b> — "
            f"<span class='cfnb-totals'>{html.escape(self.totals())}</span>"
            "<div style='max-height:320px;overflow-y:auto'>"
            f"<table style='font-size:12px'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            "</div></div>"
        )

    def _row(self, r: RunRecord) -> str:
        tokens = r.input_tokens + r.cache_read_input_tokens + r.cache_creation_input_tokens
        latency = "" if math.isnan(r.latency_s) else f"{r.latency_s:.2f}s"
        if r.done:
            progress = "<progress value='1' max='1' style='width:70px'></progress>"
        elif r.status in ("running", "retrying"):
            so_far = (self.streamed.get(r.run_id, 0) + 3) // 4
            label = f" {so_far} tok" if so_far else ""
            progress = f"<progress style='width:70px'></progress>{label}"
        else:
            progress = ""
        cells = (
            html.escape(r.agent),
            status_badge(r.status),
            progress,
            str(r.attempts),
            f"{tokens}→{r.output_tokens}" if r.done else "",
            ("≤" if r.cost_is_estimate else "") + format_cost(r.cost_usd) if r.done else "",
            latency,
            "✓" if r.cached else "",
        )
        return (
            "<tr class='cfnb-row'>"
            + "".join(f"<td style='padding-right:8px'>{c}</td>" for c in cells)
            + "</tr>"
        )


def refresh_interval(expected: int) -> float:
    """Seconds between redraws: ten a second up to 200 rows, then slower as the table (the message) grows."""
    return max(_MIN_INTERVAL_S, expected / 2000)


class TableView:
    """A `BatchTable` shown in the cell's output and updated in place."""

    def __init__(self, *, expected: int, title: str) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self.table = BatchTable(expected=expected, title=title)
        self._throttle = Throttle(self._update, refresh_interval(expected))
        self._handle = display(HTML(self.table.render()), display_id=True)

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
        self._throttle.flush()
