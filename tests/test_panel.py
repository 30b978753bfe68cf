"""The ipywidgets panel, driven as a user would (its Run and Cancel), against the simulator."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_force_nb._session import NotebookSession, SessionSettings
from claude_force_nb.sim import Simulator, serve

from .conftest import write_claude_dir


async def test_panel_cancel_before_start_unsubscribes(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Cancelling a panel run before its task ever ran still removes the panel's event subscriber."""
    from claude_force_nb._panel import AgentPanel

    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    session = NotebookSession(
        settings=SessionSettings(config_path=str(write_claude_dir(tmp_path))), announce=lambda _: None
    )
    panel = AgentPanel(session)
    panel.task.value = "x"
    task = panel.run()
    panel.cancel()
    assert task is not None
    await asyncio.wait([task])
    await asyncio.sleep(0)
    assert not session.orchestrator().events.active
    assert panel.status.value.startswith("<b>cancelled</b>")
    await session.aclose()


@pytest.fixture
def slow_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[NotebookSession]:
    """A session (one call at a time) on its own simulator whose answers take ~1 s to stream: time to
    watch a call stream and to cancel the others."""
    with serve(ttft_s=0.05, per_token_s=0.004) as simulator:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", simulator.base_url)
        settings = SessionSettings(
            config_path=str(write_claude_dir(tmp_path)), enable_cache=False, max_concurrent=1
        )
        session = NotebookSession(
            settings=settings,
            announce=lambda _: None,
        )
        session.simulator_under_test = simulator  # type: ignore[attr-defined]
        yield session
        session.close()


async def _close(session: NotebookSession) -> None:
    """Close the session; its orchestrator closes on this loop before the test's loop ends."""
    await session.aclose()


def _values(widget: Any) -> list[str]:
    seen: list[str] = []
    widget.observe(lambda change: seen.append(change["new"]), names="value")
    return seen


async def test_the_selected_call_streams_into_the_detail_and_no_other_call_streams(
    slow_session: NotebookSession,
) -> None:
    """Selecting a row shows that call: its text as it streams (only that call is streamed), then its
    answer, attempts, tokens and cost; another row, selected after the run, shows its own answer."""
    from claude_force_nb._panel import AgentPanel

    panel = AgentPanel(slow_session)
    agents = sorted(slow_session.orchestrator().agents)[:3]
    panel.agents.value = tuple(agents)
    panel.task.value = "Explain the difference between a list and a tuple."
    details = _values(panel.detail)
    task = panel.run()
    assert task is not None and panel.selected.value == agents[0]
    results = await task
    await asyncio.sleep(0)
    assert all(r.success for r in results)
    simulator = slow_session.simulator_under_test  # type: ignore[attr-defined]
    assert simulator.stats()["streamed"] == 1
    partial = [d for d in details if "▌" in d]
    assert partial, "no partial answer was shown while the call ran"
    final = panel.detail.value
    first = results[0].output
    assert html.escape(first[:40]) in final and "▌" not in final
    assert "attempts" in final and "tokens" in final and "cost" in final
    panel.selected.value = agents[1]
    assert html.escape(results[1].output[:40]) in panel.detail.value
    await _close(slow_session)


async def test_a_budget_refusal_says_why_in_the_row_the_detail_and_the_gauge(
    slow_session: NotebookSession,
) -> None:
    """With a budget too small for one call, every row is refused and carries the reason; the totals count
    refusals (not "done"), and the gauge shows the run's limit."""
    from claude_force_nb._panel import AgentPanel

    panel = AgentPanel(slow_session)
    panel.agents.value = tuple(sorted(slow_session.orchestrator().agents)[:2])
    panel.task.value = "Summarise this."
    panel.budget.value = 0.000001
    task = panel.run()
    assert task is not None
    await task
    await asyncio.sleep(0)
    assert panel.calls.value.count("class='cfnb-reason'") == 2
    assert "budget" in panel.calls.value and "0/2 done · 2 refused" in panel.calls.value
    assert "refused" in panel.detail.value and "cfnb-error" in panel.detail.value
    assert "this run&#x27;s budget" in panel.gauge.value or "this run's budget" in panel.gauge.value
    assert "$0.0000 limit" in panel.gauge.value
    simulator = slow_session.simulator_under_test  # type: ignore[attr-defined]
    assert simulator.stats()["requests"] == 0
    await _close(slow_session)


async def test_cancel_counts_cancelled_calls_apart_and_keeps_the_finished_one(
    slow_session: NotebookSession,
) -> None:
    """At concurrency 1, cancel after the first answer: one done, the rest cancelled (never "done" or
    "failed"), no full progress bar or latency on a call that never ran; the snapshot shows the table."""
    from claude_force_nb._panel import AgentPanel

    panel = AgentPanel(slow_session)
    panel.agents.value = tuple(sorted(slow_session.orchestrator().agents)[:3])
    panel.task.value = "Explain recursion."
    first_done = asyncio.Event()
    panel.calls.observe(
        lambda change: first_done.set() if "1/3 done" in change["new"] else None, names="value"
    )
    task = panel.run()
    assert task is not None
    await asyncio.wait_for(first_done.wait(), timeout=60)
    assert "1 queued" in panel.calls.value and "1 running" in panel.calls.value
    panel.cancel()
    await asyncio.wait([task])
    await asyncio.sleep(0)
    table = panel.calls.value
    assert "1/3 done · 2 cancelled" in table and "failed" not in table
    rows = table.split("class='cfnb-row'")[1:]
    assert sum("value='1'" in row for row in rows) == 1
    assert panel.status.value.startswith("<b>cancelled</b>: 1 finished")
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].count("class='cfnb-row'") == 3
    await _close(slow_session)


async def test_charts_and_the_cache_tab_refresh_as_calls_finish(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The charts are redrawn while the run goes on (not only at its end); the Cache tab lists the
    entries the run stored (agent and task preview) beside the hit-rate chart."""
    from claude_force_nb._panel import AgentPanel

    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    session = NotebookSession(
        settings=SessionSettings(config_path=str(write_claude_dir(tmp_path)), max_concurrent=1),
        announce=lambda _: None,
    )
    panel = AgentPanel(session)
    panel.agents.value = tuple(sorted(session.orchestrator().agents)[:3])
    panel.task.value = "Name one prime."
    drawn_while_running: list[bool] = []
    task = panel.run()
    assert task is not None
    panel.charts.observe(lambda _: drawn_while_running.append(not task.done()), names="value")
    await task
    await asyncio.sleep(0)
    assert drawn_while_running and drawn_while_running[0]
    assert panel.charts.value[:4] == b"\x89PNG" and panel.cache_chart.value[:4] == b"\x89PNG"
    assert panel.cache_stats.value.count("class='cfnb-entry'") == 3
    assert "Name one prime." in panel.cache_stats.value
    await _close(session)


async def test_clicks_from_a_kernel_subshell_run_on_the_notebook_loop(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """JupyterLab sends widget messages on a kernel subshell, which ipykernel 7 handles in another thread
    with its own event loop. Run and Cancel clicked there must still run the calls on the notebook's loop,
    where the orchestrator and its connection pool live: on the subshell's loop, the pooled connections
    failed ("attached to a different loop") and the calls were counted as failed."""
    import threading

    from claude_force_nb._panel import AgentPanel

    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    session = NotebookSession(
        settings=SessionSettings(config_path=str(write_claude_dir(tmp_path)), enable_cache=False),
        announce=lambda _: None,
    )
    panel = AgentPanel(session)
    panel.agents.value = tuple(sorted(session.orchestrator().agents)[:3])
    panel.task.value = "Name one prime."
    first = panel.run()
    assert first is not None
    await first  # on the notebook's loop: the connection pool now holds its connections

    notebook_loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    panel.run_button.observe(  # enabled again when a run ends, however it ends
        lambda change: None if change["new"] else notebook_loop.call_soon_threadsafe(ended.set),
        names="disabled",
    )
    subshell_loop = asyncio.new_event_loop()
    subshell = threading.Thread(target=subshell_loop.run_forever, name="subshell", daemon=True)
    subshell.start()
    try:

        async def click_run() -> None:
            panel.run_button.click()

        panel.task.value = "Name another prime."
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(click_run(), subshell_loop))
        await asyncio.wait_for(ended.wait(), timeout=60)
    finally:
        subshell_loop.call_soon_threadsafe(subshell_loop.stop)
        subshell.join(timeout=10)
        subshell_loop.close()
    assert panel._task is not None and panel._task.get_loop() is notebook_loop
    second = [r for r in session.run_log if r.task == "Name another prime."]
    assert [r.status for r in second] == ["succeeded"] * 3, [r.error for r in second]
    await _close(session)
