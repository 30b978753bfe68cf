"""The notebook side of Message Batches: `%%agent NAME --inputs df --batch`, `%agent batches` and
`%agent batch status|cancel|collect ID`. Presentation only: the work is `_batch.py`'s.

A blocking `--batch` cell submits, then waits with one progress line that is updated in place (a display
handle: counts by status, elapsed time, cost so far and the worst case still held); the result is the same
DataFrame `--inputs` gives, plus `batch_id`. An interrupt leaves the batch running on the server and prints
how to collect it. `--bg` returns the `BatchJob` at once, and a task on the kernel's loop collects it into
the cache and the run log while the kernel is idle; in a Jupyter kernel with ipywidgets it also shows the
progress line with a Cancel button (a blocking cell cannot offer one: the kernel handles no clicks while a
cell runs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ._batch import DEFAULT_POLL_INTERVAL_S, BatchJob, BatchStatus
from ._batch_submit import batch_status, cancel_job, list_jobs
from ._display import AgentRun, format_cost
from ._exceptions import AgentRunFailed
from ._loop import run_blocking, spawn

if TYPE_CHECKING:
    import pandas as pd

    from ._orchestrator import AsyncAgentOrchestrator

__all__ = ["BatchControl", "ProgressLine", "batch_command", "jobs_frame", "run_batch_cell"]

log = logging.getLogger("claude_force_nb")
_background: set[asyncio.Task[Any]] = set()  # strong references: a task nobody holds can be collected


class ProgressLine:
    """One line of progress, replaced in place (plain text where rich output is not shown)."""

    def __init__(self, orch: AsyncAgentOrchestrator, job: BatchJob) -> None:
        self._orch = orch
        self._job = job
        self._handle: Any = None
        self.last = ""

    def text(self, status: BatchStatus) -> str:
        done = status.total - status.processing - status.cached  # a resubmitted item counts once
        total = len(self._job)
        spent = self._job.cost_so_far()
        collected = self._job.collected()
        # The whole job's cost, extrapolated from the items collected so far (cache hits cost nothing).
        estimate = ""
        if collected and status.processing_status != "ended":
            sent = total - status.cached - status.failed_locally
            estimate = f" (about {format_cost(spent / collected * sent)} for all)"
        return (
            f"batch {self._job.id}: {status.processing_status} · {done + status.cached}/{total} done "
            f"({status}) · cost so far {format_cost(spent)}{estimate} · {status.elapsed_s:.0f} s"
        )

    def __call__(self, status: BatchStatus) -> None:
        self.last = self.text(status)
        if self._handle is None:
            self._handle = _show(_Text(self.last), display_id=True)
        else:
            self._handle.update(_Text(self.last))


def _show(value: object, **options: Any) -> Any:
    from IPython import display as ipython_display

    display: Any = ipython_display.display  # not annotated by IPython
    return display(value, **options)


class _Text:
    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_markdown_(self) -> str:
        return "<small>" + self.text.replace("$", "\\$") + "</small>"

    def __repr__(self) -> str:
        return self.text


def _run_of(job: BatchJob, inputs: list[dict[str, Any]] | None, fmt: str, started: float) -> AgentRun:
    return AgentRun(
        job.results(), kind="inputs", fmt=fmt, inputs=inputs, elapsed_s=time.perf_counter() - started
    )


def batch_frame(run: AgentRun) -> pd.DataFrame:
    """The `--inputs` frame plus the API batch id of each row."""
    frame = run.to_frame()
    frame["batch_id"] = [r.metadata.get("batch_id") for r in run.results]
    return frame


async def _collect(
    job: BatchJob, poll_interval: float, on_progress: Any, *, background: bool = False
) -> BatchJob:
    try:
        await job.wait(poll_interval=poll_interval, on_progress=on_progress)
    except (asyncio.CancelledError, KeyboardInterrupt):
        if not background:  # a background task never prints into whatever cell is running now
            print(
                f"Stopped waiting: batch {job.id} keeps running on the server. Collect it later with "
                f"`%agent batch collect {job.id}` (or `await orch.resume_batch({job.id!r})`), "
                "also after a kernel restart."
            )
        raise
    return job


class BatchControl:
    """`--bg` where widgets work: the progress line and a Cancel button, updated by the background collector
    through trait values only (never by printing)."""

    def __init__(self, orch: AsyncAgentOrchestrator, job: BatchJob) -> None:
        import ipywidgets as w

        self.job = job
        self._line = ProgressLine(orch, job)
        self.label = w.HTML(value=_Text(f"batch {job.id}: submitted, {len(job)} rows")._repr_markdown_())
        self.cancel_button = w.Button(description="Cancel batch", button_style="warning", icon="stop")
        self.cancel_button.on_click(self._on_cancel)
        self.widget = w.HBox([self.label, self.cancel_button])
        self._tasks: set[asyncio.Task[Any]] = set()

    def update(self, status: BatchStatus) -> None:
        self.label.value = _Text(self._line.text(status))._repr_markdown_()
        if status.processing_status == "ended":
            self.cancel_button.disabled = True

    def _on_cancel(self, _button: Any = None) -> None:
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling…"
        task = spawn(self.job.cancel())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _widgets_work(shell: Any) -> bool:
    """True in a Jupyter kernel with ipywidgets installed (a terminal IPython has no frontend for them)."""
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def run_batch_cell(
    magics: Any,
    orch: AsyncAgentOrchestrator,
    plan: Any,
    *,
    variable: str | None,
    show: bool,
    background: bool,
    poll_interval: float | None,
) -> Any:
    """`%%agent NAME --inputs df --batch [--bg]`: submit, then wait (or return the job at once)."""
    interval = DEFAULT_POLL_INTERVAL_S if poll_interval is None else poll_interval
    started = time.perf_counter()
    job: BatchJob = run_blocking(orch.submit_batch(plan.calls))
    if job.reused:
        print(
            f"These rows are already in batch {job.id} (still open): collecting that one, not paying twice."
        )
    namespace = magics.shell.user_ns
    if background:
        control = BatchControl(orch, job) if _widgets_work(magics.shell) and not plan.quiet else None
        on_progress = control.update if control is not None else None
        task = spawn(_collect(job, interval, on_progress, background=True))
        _background.add(task)
        task.add_done_callback(_background.discard)
        if variable:
            namespace[variable] = job
        print(f"Batch {job.id} submitted ({len(job)} rows); `%agent batch status {job.id}` to follow it.")
        if control is not None:
            _show(control)
        return job
    run_blocking(_collect(job, interval, None if plan.quiet else ProgressLine(orch, job)))
    run = _run_of(job, plan.inputs, plan.fmt, started)
    frame = batch_frame(run)
    namespace["_agent_last"] = run
    if variable:
        namespace[variable] = frame
    if not run.success:
        raise AgentRunFailed(run)
    return frame if show else None


def jobs_frame(orch: AsyncAgentOrchestrator) -> pd.DataFrame:
    """`%agent batches`: every registered job, newest first, with its live status for open ones."""
    import pandas as pd

    rows = []
    for job in list_jobs(orch):
        row: dict[str, Any] = {
            "batch_id": job.batch_ids[0] if job.batch_ids else job.job_id,
            "created": pd.Timestamp(job.created, unit="s", tz="UTC"),
            "items": job.n_items,
            "batches": len(job.batch_ids),
            "state": job.state,
            "status": "",
            "endpoint": job.endpoint,
        }
        if job.state == "open" and job.batch_ids and job.endpoint == (orch.base_url or job.endpoint):
            try:
                row["status"] = str(run_blocking(batch_status(orch, job.batch_ids[0])))
            except Exception as exc:  # one unreachable job must not hide the others
                row["status"] = f"unknown ({exc})"
        rows.append(row)
    columns = ["batch_id", "created", "items", "batches", "state", "status", "endpoint"]
    return pd.DataFrame(rows, columns=columns)


def batch_command(magics: Any, orch: AsyncAgentOrchestrator, action: str, batch_id: str) -> Any:
    """`%agent batch status|cancel|collect ID`."""
    if action == "status":
        return run_blocking(batch_status(orch, batch_id))
    if action == "cancel":
        status = run_blocking(cancel_job(orch, batch_id))
        print(f"Cancelling batch {batch_id}: {status}. `%agent batch collect {batch_id}` gets what finished.")
        return status
    started = time.perf_counter()
    job = run_blocking(orch.resume_batch(batch_id))
    run_blocking(_collect(job, DEFAULT_POLL_INTERVAL_S, ProgressLine(orch, job)))
    run = _run_of(job, None, "markdown", started)
    magics.shell.user_ns["_agent_last"] = run
    return batch_frame(run)
