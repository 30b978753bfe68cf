"""The ipywidgets panel, driven as a user would (its Run and Cancel), against the simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from claude_force_nb._session import NotebookSession, SessionSettings
from claude_force_nb.sim import Simulator

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
    session.close()
