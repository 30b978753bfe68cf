"""Model lifecycle through the real SDK against the simulator: retired models refused before sending (or
answered 404 by the API when forced), deprecated ones noted once per session."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from IPython.core.interactiveshell import InteractiveShell

from claude_force_nb import RateCard, RetiredModelError, define_agent
from claude_force_nb._magic import AgentMagics, AgentRunFailed
from claude_force_nb._pricing import LifecycleNotices
from claude_force_nb.sim import Simulator, serve

from .conftest import make_orchestrator

PRICES = {"input": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "output": 1}
CARD = RateCard.default().with_overrides(
    {
        "claude-house-old": {"retires": "2020-06-01", "replacement": "claude-house-new", **PRICES},
        "claude-house-aging": {"deprecated": "2020-01-01", "retires": "2099-01-01", **PRICES},
        "claude-house-new": PRICES,
    }
)


@pytest.fixture
def retiring_sim() -> Any:
    with serve(retired_models=["claude-house-old"]) as simulator:
        yield simulator


async def test_a_retired_model_is_refused_before_sending(retiring_sim: Simulator) -> None:
    """A call to a retired model fails at once, naming the replacement; nothing reaches the API."""
    define_agent("a", "x")
    async with make_orchestrator(retiring_sim, model="claude-house-old", pricing=CARD) as orch:
        result = await orch.execute_agent("a", "task")
    assert not result.success and result.status == "failed"
    assert isinstance(result.exception, RetiredModelError)
    assert "claude-house-new" in result.errors[0] and "retired on 2020-06-01" in result.errors[0]
    assert retiring_sim.stats()["requests"] == 0


async def test_a_forced_retired_model_gets_the_apis_404_once(retiring_sim: Simulator) -> None:
    """With allow_retired=True the call is sent; the simulator answers 404 not_found_error as the API does,
    and a 404 is not retried."""
    define_agent("a", "x")
    async with make_orchestrator(
        retiring_sim, model="claude-house-old", pricing=CARD, allow_retired=True
    ) as orch:
        result = await orch.execute_agent("a", "task")
    assert result.status == "failed" and result.attempts == 1
    assert "404 not_found_error" in result.errors[0]
    assert retiring_sim.stats()["by_status"] == {404: 1}


async def test_a_deprecated_model_is_noted_once_and_still_runs(sim: Simulator) -> None:
    """A deprecated model runs; its retirement date is said in one line, once, however many calls."""
    define_agent("a", "x")
    lines: list[str] = []
    notices = LifecycleNotices(lines.append)
    async with make_orchestrator(sim, model="claude-house-aging", pricing=CARD, notices=notices) as orch:
        results = await orch.execute_multiple([("a", "one"), ("a", "two")])
        await orch.execute_agent("a", "three")
    assert all(r.success for r in results)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "claude-house-aging is deprecated and retires on 2099-01-01" in lines[0]


async def test_the_simulator_answers_404_for_retired_ids_through_the_sdk(retiring_sim: Simulator) -> None:
    """Messages and count_tokens both answer 404 not_found_error for a retired model and its dated ids."""
    client = anthropic.AsyncAnthropic(base_url=retiring_sim.base_url, api_key="sim", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    async with client:
        for model in ("claude-house-old", "claude-house-old-20250101"):
            with pytest.raises(anthropic.NotFoundError) as caught:
                await client.messages.create(model=model, max_tokens=10, messages=messages)  # type: ignore[arg-type]
            assert "not_found_error" in str(caught.value)
            with pytest.raises(anthropic.NotFoundError):
                await client.messages.count_tokens(model=model, messages=messages)  # type: ignore[arg-type]
        ok = await client.messages.create(model="claude-house-new", max_tokens=10, messages=messages)  # type: ignore[arg-type]
    assert ok.content


def test_the_magic_refuses_todays_retired_model_and_notes_a_deprecated_one_once(
    shell: InteractiveShell, magics: AgentMagics
) -> None:
    """In a notebook, the shipped card's retired Sonnet 4.5 stops the cell naming Sonnet 5.5; the deprecated
    Opus 4.5 runs with one readable line for the session."""
    lines: list[str] = []
    magics.session.announce = lines.append
    with pytest.raises(AgentRunFailed, match="claude-sonnet-5-5"):
        shell.run_cell_magic("agent", "code-reviewer -m claude-sonnet-4-5", "Review this.")
    assert isinstance(shell.user_ns["_agent_last"].results[0].exception, RetiredModelError)
    for task in ("one", "two"):
        shell.run_cell_magic("agent", "code-reviewer -m claude-opus-4-5 -o r", task)
        assert shell.user_ns["r"].success
    notes = [line for line in lines if "claude-opus-4-5" in line]
    life = RateCard.default().lifecycle("claude-opus-4-5")
    assert life is not None and life.retires is not None
    assert len(notes) == 1 and f"claude-opus-4-5 is deprecated and retires on {life.retires}" in notes[0]


def test_agent_models_lists_prices_status_dates_and_sources(
    shell: InteractiveShell, magics: AgentMagics
) -> None:
    """`%agent models` shows every model of the card with today's prices, status, dates and source URL."""
    frame = shell.run_line_magic("agent", "models")
    card = RateCard.default()
    assert list(frame["model"]) == list(card.models)
    row = frame.set_index("model").loc["claude-sonnet-4-5"]
    life = card.lifecycle("claude-sonnet-4-5")
    assert life is not None
    assert row["status"] == life.status and row["replacement"] == "claude-sonnet-5-5"
    assert row["retires"] == life.retires
    assert all(str(url).startswith("https://") for url in frame["source"])


def test_the_sessions_simulator_answers_404_for_todays_retired_models() -> None:
    """Offline, the notebook's simulator treats the models the card says are retired today as the API
    does: forced through with allow_retired=True, Sonnet 4.5 gets a 404 not_found_error."""
    from claude_force_nb._loop import run_blocking
    from claude_force_nb._session import NotebookSession, SessionSettings

    session = NotebookSession(settings=SessionSettings(enable_cache=False), announce=lambda _: None)
    define_agent("a", "x")
    try:
        simulator = session.simulator
        assert simulator is not None
        orch = session.orchestrator()
        orch.allow_retired = True
        forced = run_blocking(orch.execute_agent("a", "hi", model="claude-sonnet-4-5", max_tokens=20))
        current = run_blocking(orch.execute_agent("a", "hi", model="claude-sonnet-5-5", max_tokens=20))
    finally:
        session.close()
    assert forced.status == "failed" and "404 not_found_error" in forced.errors[0]
    assert current.success
