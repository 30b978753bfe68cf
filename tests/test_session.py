"""The notebook session: settings, the offline simulator, run-log persistence, live-view throttling."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from claude_force_nb import define_agent
from claude_force_nb._display import BatchTable, Throttle, refresh_interval
from claude_force_nb._events import RunEvent
from claude_force_nb._loop import run_blocking
from claude_force_nb._records import RunRecord
from claude_force_nb._session import NotebookSession, SessionSettings, find_config, reset_session
from claude_force_nb.sim import Simulator

from .conftest import write_claude_dir


def test_without_a_key_the_session_simulates_and_says_so(tmp_path: Path) -> None:
    """No ANTHROPIC_API_KEY: one line says answers are simulated, and calls go to a bundled simulator."""
    notes: list[str] = []
    session = NotebookSession(settings=SessionSettings(enable_cache=False), announce=notes.append)
    define_agent("a", "x")
    try:
        orch = session.orchestrator()
        result = run_blocking(orch.execute_agent("a", "hello", max_tokens=20))
    finally:
        session.close()
    assert result.success and result.output.startswith("[simulated ")
    assert len(notes) == 1 and "answers are simulated" in notes[0] and "ANTHROPIC_API_KEY" in notes[0]


def test_with_a_key_calls_go_to_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a key (and offline off) the note names the real endpoint; offline mode forces simulation."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-not-real")
    session = NotebookSession()
    assert session.mode_note() == (False, "claude_force_nb: calls go to the Anthropic API.")
    session.update(offline=True)
    simulated, note = session.mode_note()
    assert simulated and "offline mode is on" in note


def test_settings_that_shape_the_orchestrator_rebuild_it(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing concurrency rebuilds the orchestrator; the run log and money spent carry over."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    session = NotebookSession(
        settings=SessionSettings(enable_cache=False, budget_usd=5.0), announce=lambda _: None
    )
    define_agent("a", "x")
    first = session.orchestrator()
    run_blocking(first.execute_agent("a", "one"))
    spent = session.budget.spent_usd
    session.update(max_concurrent=3, model="claude-haiku-4-5")
    second = session.orchestrator()
    assert second is not first and second.max_concurrent == 3
    assert second.budget.spent_usd == spent > 0
    run_blocking(second.execute_agent("a", "two"))
    assert [r.task for r in session.run_log] == ["one", "two"]
    session.close()


def test_run_log_survives_a_restart(sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With runlog_path set, a new session (a restarted kernel) starts with the earlier runs."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    path = tmp_path / "runs.sqlite"
    define_agent("a", "x")
    first = NotebookSession(settings=SessionSettings(enable_cache=False), announce=lambda _: None)
    first.update(runlog_path=str(path))
    run_blocking(first.orchestrator().execute_agent("a", "before restart"))
    first.close()
    second = NotebookSession(settings=SessionSettings(enable_cache=False), announce=lambda _: None)
    assert second.persist_runs(path) == 1
    run_blocking(second.orchestrator().execute_agent("a", "after restart"))
    frame = second.runs_frame()
    assert list(frame["task"]) == ["before restart", "after restart"]
    assert frame.loc[0, "status"] == "succeeded" and frame.loc[0, "cost_usd"] > 0
    second.close()
    third = NotebookSession(announce=lambda _: None)
    assert third.persist_runs(path) == 2
    third.close()


def test_find_config_walks_up(tmp_path: Path) -> None:
    """The nearest .claude/claude.json above the working folder is found, as git finds .git."""
    config = write_claude_dir(tmp_path)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep) == config
    assert find_config(Path("/")) is None


def _event(record: RunRecord, kind: str = "started") -> RunEvent:
    return RunEvent(kind, record, time.time())  # type: ignore[arg-type]


async def test_live_table_redraws_a_bounded_number_of_times() -> None:
    """A storm of events for 1,000 calls is drawn a bounded number of times, and the last state is drawn."""
    table = BatchTable(expected=1000, title="1000 calls")
    drawn: list[str] = []
    throttle = Throttle(lambda: drawn.append(table.render()), refresh_interval(1000))
    records = [RunRecord(run_id=f"r{i}", agent="a", model="m") for i in range(1000)]
    start = time.monotonic()
    for record in records:
        record.status = "succeeded"
        table.on_event(_event(record, "finished"))
        throttle.poke()
        await asyncio.sleep(0)
    throttle.flush()
    elapsed = time.monotonic() - start
    assert len(drawn) <= elapsed / throttle.interval_s + 2
    assert "1000/1000 done" in drawn[-1] and "980 more rows: 980 succeeded" in drawn[-1]
    assert refresh_interval(5) < refresh_interval(1000)


def test_model_and_max_tokens_apply_to_the_live_orchestrator(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing the default model or max_tokens takes effect at the next call, without a rebuild."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    define_agent("a", "x")
    session = NotebookSession(settings=SessionSettings(enable_cache=False), announce=lambda _: None)
    orch = session.orchestrator()
    run_blocking(orch.execute_agent("a", "one"))
    session.update(model="claude-haiku-4-5", max_tokens=50)
    assert session.orchestrator() is orch
    run_blocking(orch.execute_agent("a", "two"))
    body = sim.requests[-1]["json"]
    assert (body["model"], body["max_tokens"]) == ("claude-haiku-4-5", 50)
    session.close()


def test_settings_changes_keep_the_budget_object_and_replay(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session budget stays one object (in-flight reservations kept); replay survives rebuilds."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    session = NotebookSession(settings=SessionSettings(cache_backend="memory"), announce=lambda _: None)
    budget = session.budget
    budget.reserved_usd = 0.25  # as if a call were in flight
    session.update(budget_usd=1.0)
    session.update(default_format="text", budget_usd=2.0)
    assert session.budget is budget and budget.limit_usd == 2.0 and budget.reserved_usd == 0.25
    session.update(replay=True)
    session.update(max_concurrent=3)
    rebuilt = session.orchestrator()
    assert rebuilt.cache is not None and rebuilt.cache.replay
    session.close()


def test_run_log_file_is_private(sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The persisted run log (prompts, answers) is created 0600, SQLite's side files too, new folders 0700."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    old_umask = os.umask(0o022)  # the usual umask, which would make SQLite's own files 0644
    try:
        path = tmp_path / "made" / "for" / "runs.sqlite"
        define_agent("a", "x")
        session = NotebookSession(settings=SessionSettings(enable_cache=False), announce=lambda _: None)
        session.update(runlog_path=str(path))
        run_blocking(session.orchestrator().execute_agent("a", "a private prompt"))
        files = [p for p in path.parent.iterdir() if p.name.startswith("runs.sqlite")]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
        session.close()
    finally:
        os.umask(old_umask)
    assert "runs.sqlite" in modes and set(modes.values()) == {0o600}, modes
    for folder in (tmp_path / "made", tmp_path / "made" / "for"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_sim_latency_slows_the_sessions_simulator(shell: InteractiveShell) -> None:
    """`%config AgentMagics.sim_latency = 20` restarts the session's simulator 20 times slower: a call then
    takes at least 20 × the default time to its first token (and the setting is refused when negative)."""
    from claude_force_nb._magic import AgentMagics
    from claude_force_nb._session import SIM_TTFT_S

    session = NotebookSession(announce=lambda _: None)
    reset_session(session)
    magics = AgentMagics(shell=shell, session=session)
    shell.register_magics(magics)
    define_agent("a", "x")
    try:
        fast = run_blocking(session.orchestrator().execute_agent("a", "hello", max_tokens=20))
        first = session.simulator
        shell.run_line_magic("config", "AgentMagics.sim_latency = 20")
        assert session.settings.sim_latency == 20
        slow = run_blocking(session.orchestrator().execute_agent("a", "hello again", max_tokens=20))
        assert session.simulator is not first and session.simulator is not None
        assert session.simulator.config.ttft_s == pytest.approx(SIM_TTFT_S * 20)
        assert fast.success and slow.success
        assert slow.latency_s >= SIM_TTFT_S * 20 > fast.latency_s
        shell.run_line_magic("config", "AgentMagics.sim_latency = -1")  # %config logs the refusal
        assert session.settings.sim_latency == 20
    finally:
        session.close()
        reset_session(None)


_LEFT_OPEN = (
    "Task was destroyed but it is pending",
    "Unclosed client session",
    "Unclosed connector",
    "was never awaited",
    "unclosed event loop",
)


@pytest.mark.parametrize("ending", ["close", "rebuild-then-exit", "exit"])
def test_a_script_using_the_session_leaves_nothing_open_at_exit(
    ending: str, sim: Simulator, tmp_path: Path
) -> None:
    """Outside a kernel (a script, terminal IPython) the session runs on a private loop that nothing else
    runs: closing it, rebuilding its orchestrator after a settings change, or just exiting closes the
    connections on that loop. Before, the closing task was spawned there and never ran: "Task was destroyed
    but it is pending!" and "Unclosed client session" at exit."""
    import subprocess
    import sys

    script = f"""
import sys
from claude_force_nb._loop import run_blocking
from claude_force_nb._session import NotebookSession, SessionSettings, reset_session

settings = SessionSettings(config_path={str(write_claude_dir(tmp_path))!r}, enable_cache=False)
session = NotebookSession(settings=settings, announce=lambda _: None)
reset_session(session)
assert run_blocking(session.orchestrator().execute_agent("code-reviewer", "x")).success
if {ending!r} == "rebuild-then-exit":
    session.update(max_concurrent=3)
    assert run_blocking(session.orchestrator().execute_agent("code-reviewer", "y")).success
if {ending!r} == "close":
    session.close()
print("ran")
"""
    env = {**os.environ, "ANTHROPIC_BASE_URL": sim.base_url}
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ran", done.stderr
    assert not [line for line in done.stderr.splitlines() if any(m in line for m in _LEFT_OPEN)], done.stderr


async def test_aclose_waits_until_the_orchestrator_is_closed(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In async code, `await session.aclose()` returns once the orchestrator's connections are closed on this
    loop, so nothing is left pending when the loop ends."""
    from claude_force_nb._loop import pending_tasks

    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    settings = SessionSettings(config_path=str(write_claude_dir(tmp_path)), enable_cache=False)
    session = NotebookSession(settings=settings, announce=lambda _: None)
    orch = session.orchestrator()
    assert (await orch.execute_agent("code-reviewer", "x")).success
    await session.aclose()
    assert pending_tasks() == 0 and orch._backend is None and orch._closed
