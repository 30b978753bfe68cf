"""The cost preview through the real SDK against the simulator's count_tokens: counts, caching of counts,
pacing and retries, response-cache hits, replay, unpriced models, fallbacks, and budgets from counts."""

from __future__ import annotations

import math
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from claude_force_nb import AsyncAgentOrchestrator, CallSpec, RateCard, RetryPolicy, Usage, define_agent
from claude_force_nb._estimate import CostEstimate
from claude_force_nb._magic import AgentMagics
from claude_force_nb.sim import Simulator, serve

from .conftest import make_orchestrator

MODEL = "claude-sonnet-5-5"


def count_requests(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.requests if r["path"] == "/v1/messages/count_tokens"]


async def test_a_preview_counts_each_distinct_prompt_once_and_runs_nothing(sim: Simulator) -> None:
    """Six calls with three distinct prompts send three count_tokens requests and no Messages request; a
    second preview sends none; the counts are the simulator's."""
    define_agent("a", "You review code.")
    define_agent("b", "You write tests.")
    calls = [("a", "one"), ("a", "two"), ("b", "one"), ("a", "one"), ("a", "two"), ("b", "one")]
    async with make_orchestrator(sim, model=MODEL) as orch:
        first = await orch.estimate(calls)
        second = await orch.estimate(calls)
    assert first.requests_sent == 3 and second.requests_sent == 0
    stats = sim.stats()
    assert stats["count_tokens"] == 3 and stats["requests"] == 0
    assert [c.tokens_from for c in first.calls] == ["count_tokens"] * 6
    assert [c.input_tokens for c in first.calls] == [c.input_tokens for c in second.calls]
    assert first.calls[0].input_tokens == first.calls[3].input_tokens
    frame = first.to_frame()
    assert len(frame) == 6 and list(frame["index"]) == list(range(6))


async def test_counted_input_matches_the_bill_and_the_range_holds_the_real_cost(sim: Simulator) -> None:
    """The counted input equals what the run is billed; the real cost lies in the preview's range; batch
    prices are the card's discount of interactive ones; a later preview of the agent has a typical figure."""
    define_agent("a", "You review code.")
    async with make_orchestrator(sim, model=MODEL) as orch:
        preview = await orch.estimate([("a", "Review: x = 1")])
        result = await orch.execute_agent("a", "Review: x = 1")
        again = await orch.estimate([("a", "Review: x = 2")])
    call = preview.calls[0]
    assert call.input_tokens == result.input_tokens
    assert call.cost_min <= result.cost_usd <= call.cost_max
    keep = 1 - RateCard.default().batch_discount
    assert call.batch_max == pytest.approx(call.cost_max * keep)
    assert math.isnan(call.cost_typical)
    typical = again.calls[0]
    assert typical.typical_output_tokens == result.output_tokens
    card = RateCard.default()
    expected = card.cost(
        MODEL, Usage(input_tokens=typical.input_tokens or 0, output_tokens=result.output_tokens)
    )
    assert typical.cost_typical == pytest.approx(expected)


async def test_response_cache_hits_are_free_and_replay_lists_misses(sim: Simulator) -> None:
    """A cached call previews at $0 with its saving and sends no count; in replay mode a miss is listed as
    one that would fail, and nothing is sent at all."""
    define_agent("a", "x")
    async with make_orchestrator(sim, model=MODEL, cache_backend="memory", enable_cache=True) as orch:
        done = await orch.execute_agent("a", "cached task")
        sim.reset()
        preview = await orch.estimate([("a", "cached task"), ("a", "new task")])
        assert [c.tokens_from for c in preview.calls] == ["response cache", "count_tokens"]
        assert preview.calls[0].cost_max == 0 and preview.calls[0].cost_saved == pytest.approx(done.cost_usd)
        assert preview.requests_sent == 1 and preview.cached == 1
        assert orch.cache is not None
        orch.cache.replay = True
        sim.reset()
        replay = await orch.estimate([("a", "cached task"), ("a", "never seen")])
    assert [c.tokens_from for c in replay.calls] == ["response cache", "replay miss"]
    assert replay.cost_max == 0 and "would fail" in replay.calls[1].note
    assert sim.stats()["count_tokens"] == 0


async def test_an_unknown_model_is_unpriced_with_close_names(sim: Simulator) -> None:
    """A model the card lacks previews as NaN (never $0), naming the closest known models; the total is
    unpriced too."""
    define_agent("a", "x")
    async with make_orchestrator(sim, model="claude-sonnet-5-6") as orch:
        preview = await orch.estimate([("a", "task")])
    call = preview.calls[0]
    assert call.input_tokens and call.input_tokens > 0
    assert math.isnan(call.cost_min) and math.isnan(call.cost_max) and math.isnan(preview.cost_max)
    assert "unpriced" in call.note and "claude-sonnet-5-5" in call.note
    assert "unpriced" in preview.summary()


async def test_counts_are_paced_to_the_endpoints_limit_without_429s() -> None:
    """With the orchestrator's count_tokens_per_minute a little under the simulator's limit, a preview
    larger than the limit's burst waits for it instead of running into 429s."""
    define_agent("a", "x")
    with serve(count_tokens_per_minute=1200) as sim:
        async with make_orchestrator(sim, model=MODEL, count_tokens_per_minute=1120) as orch:
            preview = await orch.estimate([("a", f"task {i}") for i in range(58)])
        stats = sim.stats()
    assert stats["count_tokens"] == 58 and stats["count_tokens_limited"] == 0
    assert all(c.tokens_from == "count_tokens" for c in preview.calls)
    assert orch.token_counter.limiter.waited_s > 0


async def test_a_429_from_count_tokens_is_retried_with_our_policy() -> None:
    """Past the simulator's limit, count_tokens answers 429 with retry-after; the counter waits that long
    and tries again, so every call is still counted."""
    define_agent("a", "x")
    with serve(count_tokens_per_minute=60, rate_limit_burst_s=60) as sim:  # a bucket of a whole minute
        async with make_orchestrator(sim, model=MODEL) as orch:
            preview = await orch.estimate([("a", f"task {i}") for i in range(61)])
        stats = sim.stats()
    assert stats["count_tokens_limited"] >= 1
    assert all(c.tokens_from == "count_tokens" for c in preview.calls)
    assert preview.requests_sent == stats["count_tokens"] == 61 + stats["count_tokens_limited"]


async def test_a_failed_count_falls_back_to_the_byte_bound_and_says_so() -> None:
    """When count_tokens keeps failing, the call is previewed at the byte upper bound with the reason."""
    define_agent("a", "x")
    with serve(count_tokens_per_minute=1) as sim:
        async with make_orchestrator(sim, model=MODEL, retry_policy=RetryPolicy(max_retries=0)) as orch:
            preview = await orch.estimate([("a", "first"), ("a", "second")])
            request = orch.build_request(CallSpec(agent="a", task="second"))
    kinds = sorted(c.tokens_from for c in preview.calls)
    assert kinds == ["byte bound", "count_tokens"]
    fallback = next(c for c in preview.calls if c.tokens_from == "byte bound")
    assert "count_tokens failed" in fallback.note and "429" in fallback.note
    from claude_force_nb._calls import worst_case_prompt_tokens

    other = orch.build_request(CallSpec(agent="a", task="first"))
    assert fallback.input_tokens in (worst_case_prompt_tokens(request), worst_case_prompt_tokens(other))
    assert "not counted" in preview.summary()


async def test_invalid_and_retired_calls_are_listed_not_counted(sim: Simulator) -> None:
    """An unknown agent and a retired model are rows that say why they would not run; nothing is sent."""
    define_agent("a", "x")
    async with make_orchestrator(sim, model=MODEL) as orch:
        preview = await orch.estimate(
            [("nobody", "t"), CallSpec(agent="a", task="t", model="claude-sonnet-4-5")]
        )
    assert [c.tokens_from for c in preview.calls] == ["invalid", "retired"]
    assert "claude-sonnet-5-5" in preview.calls[1].note
    assert sim.stats()["count_tokens"] == 0


async def test_a_counted_call_reserves_its_counted_tokens_not_the_byte_bound(sim: Simulator) -> None:
    """After a preview, a budget that the byte bound would refuse admits the call, because its reservation
    prices the counted prompt (with a margin); the spend still stays within the budget."""
    define_agent("a", "x")
    task = "word " * 2000  # 10,000 bytes; the simulator counts about a quarter of that in tokens
    async with make_orchestrator(sim, model=MODEL, max_tokens=16) as orch:
        request = orch.build_request(CallSpec(agent="a", task=task))
        from claude_force_nb._calls import worst_case_prompt_tokens

        card = orch.rate_card
        byte_bound = card.worst_case_cost(
            MODEL, prompt_tokens=worst_case_prompt_tokens(request), max_tokens=16
        )
        preview = await orch.estimate([("a", task)])
        counted_bound = preview.calls[0].cost_max
        assert counted_bound < byte_bound / 2
        budget = (counted_bound * 1.2 + byte_bound) / 2 if counted_bound * 1.2 < byte_bound else byte_bound
        async with make_orchestrator(sim, model=MODEL, max_tokens=16, budget_usd=budget) as cold:
            refused = await cold.execute_agent("a", task)
        orch.budget.limit_usd = budget
        admitted = await orch.execute_agent("a", task)
    assert refused.status == "refused"
    assert admitted.success and orch.budget.spent_usd <= budget


async def test_the_orchestrator_refuses_to_preview_once_closed(sim: Simulator) -> None:
    """A closed orchestrator says so instead of previewing."""
    orch: AsyncAgentOrchestrator = make_orchestrator(sim)
    await orch.aclose()
    with pytest.raises(Exception, match="closed"):
        await orch.estimate([("a", "t")])


def test_the_magic_previews_fan_outs_inputs_and_workflows(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """`%%agent ... --estimate` returns a preview (fan-out, --inputs rows, one row per workflow step) and
    sends no Messages request; -o stores it."""
    fan = shell.run_cell_magic("agent", "code-reviewer,fixer --estimate", "Review x = 1")
    assert isinstance(fan, CostEstimate) and [c.agent for c in fan.calls] == ["code-reviewer", "fixer"]
    shell.user_ns["rows"] = [{"code": "a = 1"}, {"code": "b = 2"}, {"code": "a = 1"}]
    assert (
        shell.run_cell_magic("agent", "code-reviewer --inputs rows --estimate -o est", "Review {{code}}")
        is not None
    )
    est = shell.user_ns["est"]
    assert len(est.calls) == 3 and est.requests_sent == 2  # the third row repeats the first
    flow = shell.run_cell_magic("agent", "--workflow bug-fix --estimate", "Crash on start")
    assert [c.agent for c in flow.calls] == ["bug-investigator", "fixer", "code-reviewer"]
    assert "previous step" in flow.notes[0]
    html = flow._repr_html_()
    assert "Cost preview" in html and "$" not in html
    stats = sim.stats()
    assert stats["requests"] == 0 and stats["count_tokens"] == 2 + 2 + 3
