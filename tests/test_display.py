"""Live views: a batch table's drawing stays the same size at any scale; streamed text is sent once."""

from __future__ import annotations

import time

import pytest

from claude_force_nb._display import (
    MAX_VISIBLE_ROWS,
    PROVENANCE_MAX_CALLS,
    AgentRun,
    BatchTable,
    StreamView,
)
from claude_force_nb._events import RunEvent
from claude_force_nb._records import RunRecord
from claude_force_nb._results import AgentResult
from claude_force_nb._style import status_badge


def _feed(table: BatchTable, record: RunRecord, status: str, **fields: object) -> None:
    record.status = status  # type: ignore[assignment]
    for name, value in fields.items():
        setattr(record, name, value)
    table.on_event(RunEvent("started", record, time.time()))


def _batch(n: int, *, running: int, failed: int) -> BatchTable:
    """A table mid-run: `failed` failures, `running` calls in flight, the rest finished or queued."""
    table = BatchTable(expected=n, title=f"{n} calls")
    records = [RunRecord(run_id=f"r{i}", agent=f"agent-{i}", model="m") for i in range(n)]
    for record in records:
        _feed(table, record, "queued")
    for i, record in enumerate(records[: n - 10]):
        _feed(table, record, "running", attempts=1)
        if i < failed:
            _feed(table, record, "failed", error="boom")
        elif i < n - 10 - running:
            _feed(table, record, "succeeded", cost_usd=0.001, latency_s=0.5, output_tokens=9)
    return table


@pytest.mark.parametrize("final", [False, True])
def test_a_table_drawing_does_not_grow_with_the_batch(final: bool) -> None:
    """Drawings of 100 and 10,000 calls are the same size (digits aside); failures and calls in flight
    are the rows shown, and the hidden rows are counted by status."""
    small = _batch(100, running=8, failed=3)
    large = _batch(10_000, running=8, failed=3)
    small_html, large_html = small.render(final=final), large.render(final=final)
    assert len(large_html) <= len(small_html) + 64
    assert large_html.count("class='cfnb-row'") <= MAX_VISIBLE_ROWS
    assert large_html.count(status_badge("failed")) == 3
    assert large_html.count(status_badge("running")) == (0 if final else 8)
    shown = large_html.count("class='cfnb-row'")
    assert f"{10_000 - shown} more rows:" in large_html and "10 queued" in large_html
    assert "9979/10000 done · 8 running · 10 queued · 3 failed" in large_html


def test_a_small_batch_shows_every_row_and_its_totals() -> None:
    """Up to MAX_VISIBLE_ROWS calls: every row, in input order, with the totals line, live and final."""
    table = _batch(15, running=2, failed=1)
    for final in (False, True):
        drawing = table.render(final=final, hint="see the frame")
        assert drawing.count("class='cfnb-row'") == 15
        assert drawing.index("agent-0<") < drawing.index("agent-14<")
        assert "more row" not in drawing and "see the frame" not in drawing
    assert "2 failed" not in table.totals() and "1 failed" in table.totals()


def test_a_large_final_table_names_where_every_row_is() -> None:
    """The final drawing of a large batch is counts, its failures and the hint, without calls in flight."""
    table = _batch(1000, running=0, failed=2)
    drawing = table.render(final=True, hint="every row: _agent_last.to_frame()")
    assert drawing.count("class='cfnb-row'") == 2 and "every row: _agent_last.to_frame()" in drawing
    assert "max-height" not in drawing  # the saved table is not a scroll box


def test_a_terminal_stream_prints_the_text_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Outside a kernel the text is printed as it arrives and the end adds a summary, not a second copy."""
    view = StreamView(label="a")
    answer = "".join(f"word{i} " for i in range(200))
    for i in range(200):
        view.on_text(f"word{i} ")
    result = AgentResult(agent_name="a", success=True, output=answer)
    view.finish(AgentRun([result]))
    printed = capsys.readouterr().out
    assert printed.count(answer) == 1 and printed.count("word199") == 1
    assert "1 call" in printed


def test_an_inputs_result_displays_a_compact_frame_and_keeps_the_whole() -> None:
    """The display of a large --inputs run shows a few rows with long answers cut; to_frame() has it all."""
    answer = "a long answer " * 40
    results = [AgentResult(agent_name="a", success=True, output=f"{i}: {answer}") for i in range(500)]
    run = AgentRun(results, kind="inputs", inputs=[{"n": i} for i in range(500)])
    html_text = run._repr_mimebundle_()[0]["text/html"]
    assert html_text.count("<tr>") < 30 and answer not in html_text and "…" in html_text
    assert len(html_text) < 20 * 500  # a sliver of the ~280 KB of answers
    assert run.to_frame()["output"].str.len().min() > len(answer)


def test_the_provenance_of_a_large_run_lists_its_first_calls_and_counts_the_rest() -> None:
    """Saved with every output: one entry per call up to PROVENANCE_MAX_CALLS, then counts by status."""
    results = [
        AgentResult(agent_name="a", success=i % 3 != 0, status="succeeded" if i % 3 else "failed")
        for i in range(500)
    ]
    marks = AgentRun(results, kind="inputs", inputs=[{"n": i} for i in range(500)]).provenance()
    assert (
        len(marks["calls"]) == PROVENANCE_MAX_CALLS and marks["calls_omitted"] == 500 - PROVENANCE_MAX_CALLS
    )
    rest = results[PROVENANCE_MAX_CALLS:]
    assert marks["omitted_by_status"] == {
        "failed": sum(r.status == "failed" for r in rest),
        "succeeded": sum(r.status == "succeeded" for r in rest),
    }
    small = AgentRun(results[:3], kind="fanout").provenance()
    assert len(small["calls"]) == 3 and "calls_omitted" not in small


def test_totals_count_each_state_apart() -> None:
    """Queued calls are not counted as started or in flight; a cancelled call is neither done nor failed;
    cache hits are counted among the answers (regression: "6 started" with 2 running, "6/6 done · 5 failed"
    after Cancel)."""
    table = BatchTable(expected=6, title="6 calls")
    records = [RunRecord(run_id=f"r{i}", agent=f"agent-{i}", model="m") for i in range(6)]
    for record in records:
        _feed(table, record, "queued")
    _feed(table, records[0], "running", attempts=1)
    _feed(table, records[1], "retrying", attempts=1)
    assert table.totals().startswith("0/6 done · 1 running · 1 retrying · 4 queued · ")
    _feed(table, records[0], "succeeded", attempts=1, latency_s=0.5)
    _feed(table, records[2], "cached", cached=True, latency_s=0.01)
    for record in records[1:2] + records[3:]:
        _feed(table, record, "cancelled", error="cancelled")
    totals = table.totals()
    assert totals.startswith("2/6 done (1 cached) · 4 cancelled · ")
    assert "failed" not in totals and "queued" not in totals and "hit rate 50%" in totals


def test_rows_show_progress_latency_and_reasons_only_where_true() -> None:
    """A full bar means an answer; a cancelled or refused call has none, a call never sent shows no latency
    or tokens, and a refused or failed row carries its reason (whole on hover)."""
    reason = "budget: this call's worst case $0.0120 would pass the $0.0010 limit"
    table = BatchTable(expected=3, title="3 calls")
    ok = RunRecord(run_id="ok", agent="ok", model="m")
    refused = RunRecord(run_id="no", agent="no", model="m")
    cancelled = RunRecord(run_id="cx", agent="cx", model="m")
    _feed(table, ok, "succeeded", attempts=1, latency_s=0.5, output_tokens=9)
    _feed(table, refused, "refused", error=reason, latency_s=0.2)
    _feed(table, cancelled, "cancelled", error="cancelled", latency_s=3.0)
    rows = table.render().split("class='cfnb-row'")[1:]
    assert "value='1'" in rows[0] and "0.50s" in rows[0]
    for row in rows[1:]:
        assert "value='1'" not in row and "0.20s" not in row and "3.00s" not in row and "→" not in row
    assert "cfnb-reason" in rows[1] and "would pass the" in rows[1]


def test_inputs_rows_say_which_row_they_are() -> None:
    """For --inputs, each live row names its input: the frame's row label and a preview of its values
    (regression: every row said only the agent's name)."""
    from claude_force_nb._calls import CallSpec
    from claude_force_nb._display import input_row_labels

    inputs = [{"city": "Paris", "note": "x" * 200}, {"city": "Lima", "note": "short"}]
    calls = [CallSpec(agent="geo", task=f"Where is {row['city']}?") for row in inputs]
    labels = input_row_labels(calls, inputs, index=["a", "b"])
    table = BatchTable(expected=2, title="2 calls", labels=labels)
    for i, call in enumerate(calls):
        record = RunRecord(run_id=f"r{i}", agent="geo", model="m", task=call.task)
        _feed(table, record, "running", attempts=1)
    rows = table.render().split("class='cfnb-row'")[1:]
    assert "row a · city=Paris, note=" in rows[0] and "row b · city=Lima, note=short" in rows[1]
    assert len(labels[("geo", calls[0].task)]) <= 70  # a long value is cut
    assert "row 0" in input_row_labels(calls, inputs)[("geo", calls[0].task)]  # no index: the position
