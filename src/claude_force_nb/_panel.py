"""The interactive panel: pick agents, write a task, Run, watch the calls, Cancel, see the charts.

Widget code holds traits and callbacks only. Run schedules the batch on the kernel's loop (`spawn`) and
returns at once, so the kernel stays free and Cancel works while calls are in flight; progress arrives as
orchestrator events and is drawn by updating trait values (an HTML table redrawn at a bounded rate), never by
printing into whatever cell is running. The panel uses the session's orchestrator and run log, so its calls
appear in `%agent runs` and the charts like any other.

The Calls tab is a workspace: a keyboard-navigable list of the run's calls beside the table; the selected
call is shown in full (`_panel_views.call_detail_html`), and only that call streams its text (a "text"
subscription filtered to it), so a wide fan-out does not turn every call into a streamed one. The Charts
and Cache tabs are images and HTML redrawn as calls finish (no Output widget, which some front ends such
as VS Code and Colab handle poorly). The panel's own output carries a static HTML copy of its last state
next to the widget, so a saved notebook or its HTML export shows the table without a widget manager.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
from collections import Counter
from collections.abc import Callable
from typing import Any

from ._calls import CallSpec
from ._display import BatchTable, Throttle, figure_png, format_cost, refresh_interval
from ._events import RunEvent
from ._limits import Budget
from ._loop import call_on, current_loop, spawn
from ._panel_views import budget_gauge_html, cache_entries_html, call_detail_html, snapshot_html
from ._records import RunRecord, new_run_id
from ._results import AgentResult
from ._session import NotebookSession, get_session
from ._style import STATUS_COLOURS, math_safe_html

__all__ = ["AgentPanel", "panel"]


class AgentPanel:
    """An ipywidgets panel over a notebook session. Display it by leaving it last in a cell."""

    CHART_INTERVAL_S = 2.0
    """Seconds between chart redraws while calls finish (a redraw renders a PNG: ~0.3 s of kernel time)."""

    def __init__(self, session: NotebookSession | None = None) -> None:
        import ipywidgets as w

        self.session = session if session is not None else get_session()
        orch = self.session.orchestrator()
        settings = self.session.settings
        names = sorted(orch.agents)
        wide = {"description_width": "110px"}  # room for "Concurrency" without truncation
        self.agents = w.SelectMultiple(
            options=names, value=tuple(names[:1]), rows=min(8, max(len(names), 2)), description="Agents"
        )
        self.model = w.Combobox(
            value=settings.model,
            options=list(orch.rate_card.models),
            description="Model",
            ensure_option=False,
            style=wide,
        )
        self.task = w.Textarea(
            placeholder="The task for every selected agent…",
            description="Task",
            layout=w.Layout(width="98%", height="90px"),
        )
        self.concurrency = w.BoundedIntText(
            value=settings.max_concurrent, min=1, max=256, description="Concurrency", style=wide
        )
        self.use_cache = w.Checkbox(value=settings.enable_cache, description="Use the response cache")
        self.budget = w.BoundedFloatText(
            value=0.0,
            min=0.0,
            max=1e6,
            step=0.1,
            description="Budget $",
            tooltip="Spending cap for one run; 0 means none",
            style=wide,
        )
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = w.Button(
            description="Cancel", button_style="warning", icon="stop", disabled=True
        )
        self.status = w.HTML(value="<i>ready</i>")
        self.gauge = w.HTML(value="")
        self.calls = w.HTML(value="<i>no calls yet</i>")
        self.selected = w.Select(
            options=[],
            rows=6,
            description="Call",
            layout=w.Layout(width="260px"),
            style={"description_width": "40px"},
        )
        self.detail = w.HTML(value="", layout=w.Layout(flex="1 1 auto", min_width="0"))
        self.cache_stats = w.HTML(value="")
        self.cache_chart = w.Image(format="png", layout=w.Layout(max_width="640px"))
        self.charts = w.Image(format="png", layout=w.Layout(max_width="100%"))
        calls_tab = w.VBox([self.calls, w.HBox([self.selected, self.detail])])
        self.tabs = w.Tab(children=[calls_tab, w.VBox([self.cache_stats, self.cache_chart]), self.charts])
        for index, title in enumerate(("Calls", "Cache", "Charts")):
            self.tabs.set_title(index, title)
        controls = w.VBox(
            [
                w.HBox([self.agents, w.VBox([self.model, self.concurrency, self.budget, self.use_cache])]),
                self.task,
                w.HBox([self.run_button, self.cancel_button, self.status]),
                self.gauge,
            ]
        )
        self.widget = w.VBox([controls, self.tabs])
        self.widget.add_class("cfnb-panel")
        # The front end's clicks may arrive on another thread (a kernel subshell): the calls, their tasks
        # and the orchestrator all live on the notebook's loop, so the callbacks run there.
        self._loop = current_loop()
        self.run_button.on_click(lambda _: call_on(self._loop, self.run))
        self.cancel_button.on_click(lambda _: call_on(self._loop, self.cancel))
        self.selected.observe(lambda _: call_on(self._loop, self._show_detail), names="value")
        self._task: asyncio.Task[list[AgentResult]] | None = None
        self._table: BatchTable | None = None
        self._throttle: Throttle | None = None
        self._chart_throttle: Throttle | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._run_budget: Budget | None = None
        self._batch_id: str | None = None
        self._by_agent: dict[str, RunRecord] = {}
        self._streamed: dict[str, list[str]] = {}
        self._display_id: str | None = None
        self._resend_hook: Callable[..., None] | None = None  # see _resend_with_next_cell
        self.results: list[AgentResult] = []
        self._refresh_gauge()
        self._refresh_cache_stats()

    # -- display ------------------------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        """Show the widget, then a static copy of its state as a separate output (updated when a run ends).

        Two outputs, so that updating the copy never redraws the live widget: a redrawn view would take the
        keyboard focus and any half-typed value from the user. The copy hides itself next to a live panel
        (a CSS rule in it), so it shows only where no widget manager runs (an HTML export, GitHub).
        """
        from IPython.display import display

        self._display_id = self._display_id or f"cfnb-panel-{new_run_id()}"
        display(self.widget)
        display(self._snapshot_bundle(), raw=True, display_id=self._display_id)

    def _snapshot_bundle(self) -> dict[str, str]:
        return {"text/html": self.snapshot(), "text/plain": ""}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        """The widget with the static copy as its HTML alternative (for renderers that skip
        `_ipython_display_`)."""
        return {**self.widget._repr_mimebundle_(), "text/html": self.snapshot()}

    def snapshot(self) -> str:
        """The panel's state as static HTML: status, budget, the calls table and the selected call."""
        return snapshot_html(
            math_safe_html(self.status.value), self.gauge.value, self.calls.value, self.detail.value
        )

    # -- callbacks ----------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def run(self) -> asyncio.Task[list[AgentResult]] | None:
        """Start the selected agents on the task; returns the scheduled task (None if nothing to run)."""
        if self.running:
            return self._task
        agents = list(self.agents.value)
        task = self.task.value.strip()
        if not agents or not task:
            self.status.value = (
                f"<b style='color:{STATUS_COLOURS['failed']}'>choose at least one agent and write a task</b>"
            )
            return None
        if self.concurrency.value != self.session.settings.max_concurrent:
            self.session.update(max_concurrent=int(self.concurrency.value))
        orch = self.session.orchestrator()
        batch_id = new_run_id()
        self._batch_id = batch_id
        self._run_budget = Budget(float(self.budget.value)) if self.budget.value > 0 else None
        calls = [
            CallSpec(
                agent=name,
                task=task,
                model=self.model.value or None,
                use_cache=self.use_cache.value,
                batch_id=batch_id,
                budget=self._run_budget,
            )
            for name in agents
        ]
        self._table = BatchTable(
            expected=len(calls), title=f"{len(calls)} call{'s' if len(calls) != 1 else ''}"
        )
        self._by_agent = {}
        self._streamed = {}
        self.selected.options = [(f"{i} · {name}", name) for i, name in enumerate(agents, 1)]
        self.selected.value = agents[0]
        self._throttle = Throttle(self._redraw, refresh_interval(len(calls)))
        self._chart_throttle = Throttle(self._refresh_charts, self.CHART_INTERVAL_S)
        mine = lambda record: record.batch_id == batch_id  # noqa: E731
        # Unsubscribed in _finished, which runs however the task ends (even cancelled before it started).
        self._unsubscribe = [
            orch.events.subscribe(self._on_event, where=mine),
            orch.events.subscribe(
                self._on_text,
                kinds=("text", "retrying"),
                where=lambda record: mine(record) and record.agent == self.selected.value,
            ),
        ]
        self._set_running(True)
        self.status.value = f"running {len(calls)} call(s)…"
        self._redraw()
        self._task = spawn(orch.execute_multiple(calls))
        self._task.add_done_callback(self._finished)
        return self._task

    def cancel(self) -> None:
        """Stop the calls in flight; finished results are kept (here and in the run log)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _on_event(self, event: RunEvent) -> None:
        if self._table is None or self._throttle is None:
            return
        self._by_agent[event.record.agent] = event.record
        self._table.on_event(event)
        self._throttle.poke()
        if event.record.done and self._chart_throttle is not None:
            self._chart_throttle.poke()

    def _on_text(self, event: RunEvent) -> None:
        parts = self._streamed.setdefault(event.record.run_id, [])
        if event.kind == "retrying":
            parts.clear()  # the next attempt starts the answer again
        elif event.text:
            parts.append(event.text)
        if self._throttle is not None:
            self._throttle.poke()

    def _redraw(self) -> None:
        if self._table is not None:
            self.calls.value = self._table.render()
        self._refresh_gauge()
        self._show_detail()

    def _show_detail(self) -> None:
        agent = self.selected.value
        if agent is None:
            self.detail.value = ""
            return
        record = self._by_agent.get(agent)
        streamed = "".join(self._streamed.get(record.run_id, ())) if record is not None else ""
        self.detail.value = call_detail_html(record, streamed=streamed, label=self.selected.label or agent)

    def _refresh_gauge(self) -> None:
        budget = self._run_budget
        what = "this run's budget"
        if budget is None:
            budget, what = self.session.orchestrator().budget, "session budget"
        self.gauge.value = budget_gauge_html(
            budget.spent_usd, budget.reserved_usd, budget.limit_usd, what=what
        )

    def _set_running(self, running: bool) -> None:
        self.run_button.disabled = running
        self.cancel_button.disabled = not running

    def _finished(self, task: asyncio.Task[list[AgentResult]]) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self._set_running(False)
        if self._chart_throttle is not None:
            self._chart_throttle.cancel()
        if self._throttle is not None:
            self._throttle.cancel()
        batch_rows = list(self._table.records.values()) if self._table is not None else []
        red = STATUS_COLOURS["failed"]
        if task.cancelled():
            kept = [r for r in batch_rows if r.status in ("succeeded", "cached")]
            self.results = [AgentResult.from_record(r) for r in kept]
            self.status.value = f"<b>cancelled</b>: {len(kept)} finished result(s) kept"
        elif task.exception() is not None:
            self.status.value = math_safe_html(
                f"<b style='color:{red}'>error:</b> {html.escape(str(task.exception()))}"
            )
        else:
            self.results = task.result()
            cost = sum(r.cost_usd for r in self.results)
            unanswered = Counter(r.status for r in self.results if not r.success)
            self.status.value = math_safe_html(
                f"done: {len(self.results)} call(s), {format_cost(cost)}"
                + "".join(f", <b style='color:{red}'>{n} {s}</b>" for s, n in sorted(unanswered.items()))
            )
        if self._table is not None:
            self.calls.value = self._table.render(final=True)
        self._refresh_gauge()
        self._show_detail()
        self._refresh_cache_stats()
        self._refresh_charts()
        self._update_snapshot()

    def _update_snapshot(self) -> None:
        """Replace the saved static copy (the widget view itself is unchanged: same model).

        Sent from an empty context: the run's task (and its done callback) carries the context of the cell
        that pressed Run, and ipykernel takes a message's parent from it, so the update would name a cell
        that has long finished; front ends that apply updates only for the cell running now (nbclient, so
        `make demo`) would drop it. With no parent in the context, ipykernel uses the latest request's.
        A run that ends while no cell runs (the kernel idles between cells: a fast or cached run) has no
        cell to take its update at all, so the next cell to run sends it again (`pre_run_cell`).
        """
        if self._display_id is None:
            return
        contextvars.Context().run(self._send_snapshot)
        self._resend_with_next_cell()

    def _send_snapshot(self) -> None:
        from IPython.display import update_display

        update_display(self._snapshot_bundle(), raw=True, display_id=self._display_id)

    def _resend_with_next_cell(self) -> None:
        """Send the snapshot once more when the next cell starts (only in a kernel; once per run end)."""
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or getattr(shell, "kernel", None) is None or self._resend_hook is not None:
            return

        def resend(*_: Any) -> None:
            shell.events.unregister("pre_run_cell", resend)
            self._resend_hook = None
            self._send_snapshot()

        self._resend_hook = resend
        shell.events.register("pre_run_cell", resend)

    def _refresh_cache_stats(self) -> None:
        cache = self.session.orchestrator().cache
        if cache is None:
            self.cache_stats.value = "<i>the response cache is off</i>"
            return
        stats = cache.stats()
        entries = cache.entries_frame()
        if len(entries) <= 200:  # task previews read every value: fine for a small cache only
            entries = cache.entries_frame(tasks=True)
        self.cache_stats.value = math_safe_html(
            f"<div style='font-size:12px'>{html.escape(repr(stats))}</div>"
        ) + cache_entries_html(entries)

    def _refresh_charts(self) -> None:
        """Redraw the four charts from the session's run log (Charts tab) and the hit-rate chart (Cache tab).

        A bare, transparent `Figure` (see `chart_figure`): readable on the light and the dark theme.
        """
        from . import _plots

        frame = self.session.runs_frame()
        cache = self.session.orchestrator().cache
        stats = cache.stats() if cache is not None else None
        figure = _plots.chart_figure((13, 8))
        axes = figure.subplots(2, 2)
        _plots.plot_latency(frame, ax=axes[0][0])
        _plots.plot_cost(frame, ax=axes[0][1])
        _plots.plot_cache(frame, stats=stats, ax=axes[1][0])
        _plots.plot_timeline(frame, attempts=_plots.attempts_frame(self.session.run_log), ax=axes[1][1])
        self.charts.value = figure_png(figure, dpi=80)
        small = _plots.chart_figure((6.5, 3.2))
        _plots.plot_cache(frame, stats=stats, ax=small.subplots())
        self.cache_chart.value = figure_png(small, dpi=80)


def panel(session: NotebookSession | None = None) -> AgentPanel:
    """The interactive panel over the notebook session (`%agent panel` shows the same)."""
    return AgentPanel(session)
