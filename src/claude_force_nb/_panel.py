"""The interactive panel: pick agents, write a task, Run, watch the calls, Cancel, see the charts.

Widget code holds traits and callbacks only. Run schedules the batch on the kernel's loop (`spawn`) and
returns at once, so the kernel stays free and Cancel works while calls are in flight; progress arrives as
orchestrator events and is drawn by updating trait values (an HTML table redrawn at a bounded rate), never by
printing into whatever cell is running. The panel uses the session's orchestrator and run log, so its calls
appear in `%agent runs` and the charts like any other.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from typing import Any

from ._calls import CallSpec
from ._display import BatchTable, Throttle, figure_png, format_cost, refresh_interval
from ._events import RunEvent
from ._limits import Budget
from ._loop import spawn
from ._records import new_run_id
from ._results import AgentResult
from ._session import NotebookSession, get_session
from ._style import math_safe_html

__all__ = ["AgentPanel", "panel"]


class AgentPanel:
    """An ipywidgets panel over a notebook session. Display it by leaving it last in a cell."""

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
        self.calls = w.HTML(value="<i>no calls yet</i>")
        self.cache_stats = w.HTML(value="")
        self.charts = w.Output()
        self.tabs = w.Tab(children=[self.calls, self.cache_stats, self.charts])
        for index, title in enumerate(("Calls", "Cache", "Charts")):
            self.tabs.set_title(index, title)
        controls = w.VBox(
            [
                w.HBox([self.agents, w.VBox([self.model, self.concurrency, self.budget, self.use_cache])]),
                self.task,
                w.HBox([self.run_button, self.cancel_button, self.status]),
            ]
        )
        self.widget = w.VBox([controls, self.tabs])
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self._task: asyncio.Task[list[AgentResult]] | None = None
        self._table: BatchTable | None = None
        self._throttle: Throttle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.results: list[AgentResult] = []
        self._refresh_cache_stats()

    # -- display ------------------------------------------------------------------------------------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)

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
            self.status.value = "<b style='color:#cf222e'>choose at least one agent and write a task</b>"
            return None
        if self.concurrency.value != self.session.settings.max_concurrent:
            self.session.update(max_concurrent=int(self.concurrency.value))
        orch = self.session.orchestrator()
        batch_id = new_run_id()
        budget = Budget(float(self.budget.value)) if self.budget.value > 0 else None
        calls = [
            CallSpec(
                agent=name,
                task=task,
                model=self.model.value or None,
                use_cache=self.use_cache.value,
                batch_id=batch_id,
                budget=budget,
            )
            for name in agents
        ]
        self._table = BatchTable(
            expected=len(calls), title=f"{len(calls)} call{'s' if len(calls) != 1 else ''}"
        )
        self._throttle = Throttle(self._redraw, refresh_interval(len(calls)))
        # Unsubscribed in _finished, which runs however the task ends (even cancelled before it started).
        self._unsubscribe = orch.events.subscribe(lambda event: self._on_event(event, batch_id))
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

    def _on_event(self, event: RunEvent, batch_id: str) -> None:
        if event.record.batch_id != batch_id or self._table is None or self._throttle is None:
            return
        self._table.on_event(event)
        self._throttle.poke()

    def _redraw(self) -> None:
        if self._table is not None:
            self.calls.value = self._table.render()

    def _set_running(self, running: bool) -> None:
        self.run_button.disabled = running
        self.cancel_button.disabled = not running

    def _finished(self, task: asyncio.Task[list[AgentResult]]) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._set_running(False)
        if self._throttle is not None:
            self._throttle.flush()
        batch_rows = list(self._table.records.values()) if self._table is not None else []
        if task.cancelled():
            kept = [r for r in batch_rows if r.status in ("succeeded", "cached")]
            self.results = [AgentResult.from_record(r) for r in kept]
            self.status.value = f"<b>cancelled</b>: {len(kept)} finished result(s) kept"
        elif task.exception() is not None:
            self.status.value = math_safe_html(
                f"<b style='color:#cf222e'>error:</b> {html.escape(str(task.exception()))}"
            )
        else:
            self.results = task.result()
            failed = sum(not r.success for r in self.results)
            cost = sum(r.cost_usd for r in self.results)
            self.status.value = math_safe_html(
                f"done: {len(self.results)} call(s), {format_cost(cost)}"
                + (f", <b style='color:#cf222e'>{failed} failed</b>" if failed else "")
            )
        self._refresh_cache_stats()
        self._refresh_charts()

    def _refresh_cache_stats(self) -> None:
        cache = self.session.orchestrator().cache
        if cache is None:
            self.cache_stats.value = "<i>the response cache is off</i>"
            return
        self.cache_stats.value = cache.stats().to_frame().T.to_html(header=False)

    def _refresh_charts(self) -> None:
        """Redraw the four charts from the session's run log into the Charts tab, as one PNG.

        A bare, transparent `Figure` (see `chart_figure`): readable on the light and the dark theme.
        """
        from IPython.display import Image

        from . import _plots

        frame = self.session.runs_frame()
        cache = self.session.orchestrator().cache
        figure = _plots.chart_figure((13, 8))
        axes = figure.subplots(2, 2)
        _plots.plot_latency(frame, ax=axes[0][0])
        _plots.plot_cost(frame, ax=axes[0][1])
        _plots.plot_cache(frame, stats=cache.stats() if cache is not None else None, ax=axes[1][0])
        _plots.plot_timeline(frame, attempts=_plots.attempts_frame(self.session.run_log), ax=axes[1][1])
        self.charts.outputs = ()
        self.charts.append_display_data(Image(data=figure_png(figure, dpi=80), format="png"))


def panel(session: NotebookSession | None = None) -> AgentPanel:
    """The interactive panel over the notebook session (`%agent panel` shows the same)."""
    return AgentPanel(session)
