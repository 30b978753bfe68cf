"""`%%agent NAME --inputs df --batch`, `%agent batches` and `%agent batch ...` in a real IPython shell."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from claude_force_nb import BatchJob, BatchStatus
from claude_force_nb._loop import run_blocking
from claude_force_nb._magic import AgentMagics
from claude_force_nb._parse import parse_line
from claude_force_nb.sim import Simulator, serve

ROWS = pd.DataFrame({"module": ["json", "csv", "heapq"], "focus": ["speed", "errors", "api"]})


def cell(shell: InteractiveShell, line: str, body: str) -> Any:
    return shell.run_cell_magic("agent", line, body)


def test_batch_cell_returns_the_inputs_frame_plus_batch_id(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--batch gives the same frame as --inputs (input columns first, outputs in row order) plus batch_id;
    the rows went through the batch endpoint, and the run log says mode="batch"."""
    shell.user_ns["df"] = ROWS
    frame = cell(shell, "code-reviewer --inputs df --batch --poll 0.02", "Review {{module}} for {{focus}}")
    assert list(frame["module"]) == ["json", "csv", "heapq"]
    assert {"output", "cost_usd", "cached", "error", "batch_id"} <= set(frame.columns)
    assert all(
        f"Review {m} for {f}" in out
        for m, f, out in zip(ROWS["module"], ROWS["focus"], frame["output"], strict=True)
    )
    assert frame["batch_id"].nunique() == 1 and frame["batch_id"].iloc[0].startswith("msgbatch_")
    assert sim.stats()["batch_items"] == 3 and sim.stats()["requests"] == 0
    runs = magics.session.runs_frame()
    assert set(runs["mode"]) == {"batch"}


def test_batch_needs_inputs_and_a_positive_poll(shell: InteractiveShell, magics: AgentMagics) -> None:
    """--batch without --inputs, or a bad --poll, is a one-line UsageError; nothing is sent."""
    shell.user_ns["df"] = ROWS
    with pytest.raises(UsageError, match="--batch works with --inputs"):
        cell(shell, "code-reviewer --batch", "x")
    with pytest.raises(UsageError, match="--poll must be a positive"):
        cell(shell, "code-reviewer --inputs df --batch --poll 0", "x")
    with pytest.raises(UsageError, match="--poll goes with --batch"):
        cell(shell, "code-reviewer --inputs df --poll 1", "x")


def test_bg_returns_the_job_and_batch_commands_follow_it(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """--bg returns the BatchJob at once; `%agent batches` lists it; `%agent batch status|collect ID` report
    and collect it."""
    shell.user_ns["df"] = ROWS
    job = cell(shell, "code-reviewer --inputs df --batch --bg", "Check {{module}}")
    assert isinstance(job, BatchJob)
    listed = shell.run_line_magic("agent", "batches")
    assert list(listed["batch_id"]) == [job.id] and listed["items"].iloc[0] == 3
    status = shell.run_line_magic("agent", f"batch status {job.id}")
    assert isinstance(status, BatchStatus) and status.total == 3
    run_blocking(asyncio.sleep(0.3))  # let the background collector finish on the kernel loop
    collected = shell.run_line_magic("agent", f"batch collect {job.id}")
    assert list(collected["status"]) == ["succeeded"] * 3
    assert set(collected["batch_id"]) == {job.id}


def test_batch_cancel_command(shell: InteractiveShell, magics: AgentMagics, sim: Simulator) -> None:
    """`%agent batch cancel ID` cancels a registered job; an unknown id is a UsageError."""
    shell.user_ns["df"] = ROWS
    job = cell(shell, "code-reviewer --inputs df --batch --bg --no-cache", "Cancel {{module}}")
    status = shell.run_line_magic("agent", f"batch cancel {job.id}")
    assert isinstance(status, BatchStatus)
    with pytest.raises(UsageError, match="no batch job"):
        shell.run_line_magic("agent", "batch status msgbatch_unknown")


def test_parse_batch_commands() -> None:
    """The batch line commands parse; a wrong form explains the right one."""
    assert parse_line("batches").name == "batches"
    assert parse_line("batch collect msgbatch_1").args == ("collect", "msgbatch_1")
    with pytest.raises(ValueError, match="status\\|cancel\\|collect"):
        parse_line("batch drop msgbatch_1")


async def test_progress_line_counts_and_extrapolates_the_cost() -> None:
    """The progress line shows counts, the cost so far and, while a follow-up batch runs, the whole job's
    cost extrapolated from the items already back; at the end every row is done."""
    from claude_force_nb import define_agent
    from claude_force_nb._batch_magic import ProgressLine

    from .conftest import make_orchestrator

    define_agent("a", "Answer briefly.")
    with serve(batch_error_rate=0.3, seed=5) as flaky:
        async with make_orchestrator(flaky) as orch:
            job = await orch.submit_batch([("a", f"row {i}") for i in range(20)], max_retries=10)
            progress = ProgressLine(orch, job)
            lines: list[str] = []
            await job.wait(poll_interval=0.02, on_progress=lambda status: lines.append(progress.text(status)))
    assert any("for all)" in line for line in lines[:-1])
    assert lines[-1].startswith(f"batch {job.id}: ended · 20/20 done")
    assert f"cost so far ${sum(r.cost_usd for r in job.results()):.4f}" in lines[-1]


async def test_bg_control_cancel_button_cancels_the_batch_and_follows_progress() -> None:
    """The --bg widget's Cancel button cancels the job's batches through the API; its label follows the
    job to the end and the button is disabled."""
    from claude_force_nb import define_agent
    from claude_force_nb._batch_magic import BatchControl

    from .conftest import make_orchestrator

    define_agent("a", "Answer briefly.")
    with serve(batch_items_per_s=0.0) as stuck:
        async with make_orchestrator(stuck) as orch:
            job = await orch.submit_batch([("a", f"row {i}") for i in range(3)])
            control = BatchControl(orch, job)
            control.cancel_button.click()
            assert control.cancel_button.disabled
            results = await job.wait(poll_interval=0.02, on_progress=control.update)
        assert any(r["path"].endswith("/cancel") for r in stuck.requests)
    assert [r.status for r in results] == ["cancelled"] * 3
    assert "ended" in control.label.value and "3/3 done" in control.label.value


def test_widgets_only_where_a_kernel_can_show_them(shell: InteractiveShell) -> None:
    """A terminal IPython (no kernel) gets the plain-text path, not a widget nobody can click."""
    from claude_force_nb._batch_magic import _widgets_work

    assert not _widgets_work(shell)
