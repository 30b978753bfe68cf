"""Regression tests for defects found in review: budgets, settings changes, failures and cancellation."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets import TraitError

from claude_force_nb import (
    AsyncAgentOrchestrator,
    Completion,
    ResponseCache,
    RetryPolicy,
    Usage,
    define_agent,
)
from claude_force_nb._loop import run_blocking
from claude_force_nb._magic import AgentMagics, AgentRunFailed
from claude_force_nb._session import NotebookSession, SessionSettings
from claude_force_nb.sim import Fault, Simulator

from .conftest import make_orchestrator, write_claude_dir

NO_WAIT = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.001)


async def test_abandoned_attempts_are_charged_and_retries_reserve_again(sim: Simulator) -> None:
    """A timed-out attempt may be billed: it keeps its reservation; a retry that no longer fits is refused."""
    define_agent("a", "x")
    sim.script(Fault("hang", hang_s=10), times=3)
    async with make_orchestrator(
        sim, timeout_seconds=0.1, retry_policy=NO_WAIT, model="claude-sonnet-4-6"
    ) as orch:
        orch.budget.limit_usd = 1.0
        result = await orch.execute_agent("a", "task")
        spent_for_three = orch.budget.spent_usd
        orch.budget.limit_usd = orch.budget.spent_usd + spent_for_three / 3 * 1.5  # room for one more attempt
        sim.script(Fault("hang", hang_s=10), times=3)
        refused = await orch.execute_agent("a", "another task")
    assert not result.success and result.attempts == 3
    assert spent_for_three > 0 and orch.budget.reserved_usd == pytest.approx(0.0)
    assert refused.status == "refused" and refused.attempts == 1
    assert "retry" in refused.errors[0] and "refused before sending" in refused.errors[0]
    assert orch.budget.spent_usd <= orch.budget.limit_usd


async def test_error_statuses_cost_nothing(sim: Simulator) -> None:
    """An attempt the API answered with an error status releases its reservation."""
    define_agent("a", "x")
    sim.script(Fault("overloaded"), times=1)
    async with make_orchestrator(
        sim, retry_policy=NO_WAIT, budget_usd=1.0, model="claude-sonnet-4-6"
    ) as orch:
        result = await orch.execute_agent("a", "task")
    assert result.success and result.attempts == 2
    assert orch.budget.spent_usd == pytest.approx(result.cost_usd)


class BrokenBackend:
    async def complete(self, request: Any, *, on_text: Any = None) -> Completion:
        if "boom" in request.messages[-1].content:
            raise RuntimeError("backend bug")
        return Completion(
            text="fine", model=request.model, stop_reason="end_turn", usage=Usage(output_tokens=1)
        )

    async def aclose(self) -> None:
        return None


async def test_an_unexpected_exception_fails_one_call_and_settles_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in a custom backend fails that call (final record, budget settled); the batch carries on."""
    define_agent("a", "x")
    async with AsyncAgentOrchestrator(backend=BrokenBackend(), enable_cache=False, budget_usd=5.0) as orch:
        results = await orch.execute_multiple([("a", "ok"), ("a", "boom"), ("a", "ok too")])
    assert [r.success for r in results] == [True, False, True]
    assert results[1].errors == ["RuntimeError: backend bug"]
    assert {r.status for r in orch.runs} == {"succeeded", "failed"}
    assert orch.budget.reserved_usd == pytest.approx(0.0)
    assert "failed unexpectedly" in caplog.text


async def test_a_raising_on_text_does_not_sink_the_call(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken streaming callback is logged; the answer still arrives (streamed and from the cache)."""
    define_agent("a", "x")

    def broken(_: str) -> None:
        raise ValueError("display bug")

    cache = ResponseCache("memory", secret="s")
    async with make_orchestrator(sim, cache=cache) as orch:
        streamed = await orch.execute_agent("a", "t", on_text=broken)
        cached = await orch.execute_agent("a", "t", on_text=broken)
    assert streamed.success and cached.success and cached.cached
    assert "on_text callback failed" in caplog.text


class SlowStoreCache(ResponseCache):
    storing = asyncio.Event()

    async def aput(self, *args: Any, **kwargs: Any) -> None:
        self.storing.set()
        await asyncio.sleep(5)


async def test_cancel_while_storing_keeps_the_call_succeeded(sim: Simulator) -> None:
    """A cancel after the answer arrived (during the cache write) does not make the call 'cancelled'."""
    define_agent("a", "x")
    cache = SlowStoreCache("memory", secret="s")
    cache.storing = asyncio.Event()
    async with make_orchestrator(sim, cache=cache) as orch:
        kinds: list[str] = []
        orch.events.subscribe(lambda event: kinds.append(event.kind))
        task = asyncio.ensure_future(orch.execute_agent("a", "t"))
        await asyncio.wait_for(cache.storing.wait(), timeout=10)  # the answer is in; the write is under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert orch.runs[0].status == "succeeded" and orch.runs[0].output
    assert "cancelled" not in kinds


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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_concurrent", 0),
        ("max_tokens", 0),
        ("timeout_seconds", -1.0),
        ("cache_backend", "redis:/x"),
        ("cache_ttl_hours", 0.0),
        ("budget_usd", math.nan),
        ("max_retries", -2),
    ],
)
def test_unusable_settings_are_refused_and_the_old_value_kept(
    magics: AgentMagics, name: str, value: Any
) -> None:
    """A bad %config value is refused with the reason; the session keeps working with the previous one."""
    before = getattr(magics, name)
    with pytest.raises(TraitError, match=name):
        setattr(magics, name, value)
    assert getattr(magics, name) == before or (isinstance(before, float) and math.isnan(before))


def test_capture_variables_hold_what_finished_when_a_cell_fails(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """`res << a,b` and -o keep the finished results even though the cell raises."""
    sim.script(Fault("status", status=400), match="Find root causes", times=2)
    with pytest.raises(AgentRunFailed):
        shell.run_cell_magic("agent", "res << code-reviewer,bug-investigator --quiet", "x")
    with pytest.raises(AgentRunFailed):
        shell.run_cell_magic("agent", "code-reviewer,bug-investigator -o out --quiet", "y")
    assert [r.success for r in shell.user_ns["res"].results] == [True, False]
    assert [r.success for r in shell.user_ns["out"].results] == [True, False]


def test_a_property_that_raises_is_a_usage_error(shell: InteractiveShell, magics: AgentMagics) -> None:
    """{{obj.attr}} whose property raises gives a one-line UsageError, not a traceback."""
    from IPython.core.error import UsageError

    class Odd:
        @property
        def attr(self) -> str:
            raise ValueError("no")

    shell.user_ns["odd"] = Odd()
    with pytest.raises(UsageError, match=r"\{\{odd\.attr\}\}: reading it failed"):
        shell.run_cell_magic("agent", "code-reviewer", "use {{odd.attr}}")


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
