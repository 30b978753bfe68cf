"""The orchestrator with rate limits, the budget and the response cache, through the real SDK against the
simulator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from claude_force_nb import CacheMiss, ResponseCache, RetryPolicy, define_agent
from claude_force_nb._limits import NEARLY_SPENT_FRACTION, RateLimiter
from claude_force_nb.sim import Fault, Simulator, serve

from .conftest import FakeClock, make_orchestrator

NO_WAIT = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.001)


async def test_client_side_rpm_keeps_under_the_server_limit() -> None:
    """With the client's requests/minute equal to the server's (which, like the API, enforces it over about a
    second), a burst of calls is paced smoothly from the first one, not 429'd: the server is the referee."""
    define_agent("a", "x")
    rpm, calls = 600, 40
    with serve(requests_per_minute=rpm) as limited:
        async with make_orchestrator(limited, max_concurrent=20, requests_per_minute=rpm) as orch:
            started = time.monotonic()
            results = await orch.execute_multiple([("a", f"t{i}") for i in range(calls)])
            elapsed = time.monotonic() - started
        statuses = limited.stats()["by_status"]
    assert all(r.success for r in results)
    assert 429 not in statuses and statuses[200] == calls
    # Paced: after the client's half-second burst, one request every 60/rpm seconds (a lower bound only).
    assert elapsed >= (calls - rpm / 60 * 0.5) * 60 / rpm - 0.05


async def test_nearly_spent_headers_pause_new_calls() -> None:
    """When anthropic-ratelimit-*-remaining runs low, new attempts wait before they are sent; the batch
    still completes without a 429."""
    define_agent("a", "x")
    rpm = 100
    clock = FakeClock()
    sent_before_each_wait: list[int] = []
    with serve(requests_per_minute=rpm, clock=clock, rate_limit_burst_s=60) as limited:

        async def sleep(seconds: float) -> None:
            sent_before_each_wait.append(limited.stats()["requests"])
            await clock.sleep(seconds)

        async with make_orchestrator(limited, max_concurrent=4) as orch:
            # No client-side limits, none learned: only the headers' nearly-spent pause.
            orch.limiter = RateLimiter(clock=clock, sleep=sleep, learn_limits=False)
            results = await orch.execute_multiple([("a", f"t{i}") for i in range(rpm)])
        stats = limited.stats()
    assert all(r.success for r in results)
    assert 429 not in stats["by_status"]
    # A wait happened, only once the server's headers said fewer than 5% of the requests were left ...
    assert sent_before_each_wait
    assert sent_before_each_wait[0] > rpm * (1 - NEARLY_SPENT_FRACTION)
    # ... and at least one attempt was sent after waiting.
    assert stats["requests"] > sent_before_each_wait[0]
    assert clock.now > 0 and orch.limiter.waited_s > 0


async def test_a_429_pauses_every_call_not_just_its_own() -> None:
    """After a 429 with retry-after, the other calls wait too: nothing is sent during the pause."""
    define_agent("a", "x")
    with serve(ttft_s=0.01) as server:
        server.script(Fault("rate_limit", retry_after=0.4), match="first")
        async with make_orchestrator(server, max_concurrent=1) as orch:
            results = await orch.execute_multiple([("a", "first"), ("a", "second"), ("a", "third")])
            records = list(orch.runs)
    assert all(r.success for r in results)
    first_failure = records[0].spans[0].end
    later_starts = [s.start for r in records[1:] for s in r.spans]
    assert first_failure is not None
    assert min(later_starts) - first_failure >= 0.39


async def test_a_hit_is_a_free_row_with_the_saving_recorded(sim: Simulator) -> None:
    """The second identical call is served from the cache: cached, $0, the saving and a run row recorded."""
    define_agent("a", "x")
    cache = ResponseCache("memory", secret="test")
    async with make_orchestrator(sim, cache=cache, model="claude-sonnet-4-6") as orch:
        first = await orch.execute_agent("a", "same")
        second = await orch.execute_agent("a", "same")
        frame = orch.runs.to_frame()
    assert not first.cached and second.cached
    assert second.output == first.output and second.cost_usd == 0
    assert second.cost_saved_usd == pytest.approx(first.cost_usd)
    assert list(frame["status"]) == ["succeeded", "cached"]
    assert sim.stats()["requests"] == 1
    assert cache.stats().cost_saved_usd == pytest.approx(first.cost_usd)


@pytest.mark.parametrize("tier", ["memory", "disk"])
async def test_identical_concurrent_calls_make_one_request(sim: Simulator, tmp_path: Path, tier: str) -> None:
    """50 identical calls started together make one request (the simulator's log says so); the other 49
    wait for it and are cache hits, with the saving counted."""
    define_agent("a", "x")
    cache = ResponseCache(tier, cache_dir=tmp_path, secret="test")
    try:
        async with make_orchestrator(sim, cache=cache, max_concurrent=50, model="claude-sonnet-4-6") as orch:
            results = await orch.execute_multiple([("a", "same question")] * 50)
        stats = cache.stats()
    finally:
        cache.close()  # the test's own cache: an unclosed SQLite connection is a ResourceWarning on 3.13
    assert len(sim.requests) == 1
    assert all(r.success for r in results) and len({r.output for r in results}) == 1
    sent = [r for r in results if not r.cached]
    assert len(sent) == 1 and sum(r.cached for r in results) == 49
    assert (stats.hits, stats.misses) == (49, 1)
    assert stats.cost_saved_usd == pytest.approx(49 * sent[0].cost_usd)


async def test_coalescing_respects_no_cache_refresh_and_a_failed_leader(sim: Simulator) -> None:
    """use_cache=False and refresh=True calls are all sent; when the call others wait on fails, they go on
    alone instead of sharing its failure."""
    define_agent("a", "x")
    cache = ResponseCache("memory", secret="test")
    async with make_orchestrator(sim, cache=cache, max_concurrent=10) as orch:
        await orch.execute_multiple([("a", "t")] * 5, use_cache=False)
        assert len(sim.requests) == 5
        await orch.execute_multiple([("a", "t")] * 5, refresh=True)
        assert len(sim.requests) == 10
        sim.script(Fault("status", status=400), match="fails first")
        results = await orch.execute_multiple([("a", "fails first")] * 5)
    assert [r.success for r in results].count(False) == 1
    assert len(sim.requests) == 15


async def test_use_cache_false_refresh_and_exclusions(sim: Simulator) -> None:
    """use_cache=False: no read, no write; refresh=True: no read, a write; excluded agents: bypassed."""
    define_agent("a", "x")
    define_agent("private", "y")
    cache = ResponseCache("memory", secret="test", exclude_agents=("private",))
    async with make_orchestrator(sim, cache=cache) as orch:
        await orch.execute_agent("a", "t", use_cache=False)
        assert cache.stats().entries == 0
        await orch.execute_agent("a", "t")
        refreshed = await orch.execute_agent("a", "t", refresh=True)
        hit = await orch.execute_agent("a", "t")
        await orch.execute_agent("private", "t")
        again = await orch.execute_agent("private", "t")
    assert not refreshed.cached and hit.cached
    assert not again.cached
    assert sim.stats()["requests"] == 5
    assert cache.stats().entries == 1


async def test_failures_are_never_cached(sim: Simulator) -> None:
    """A failed call stores nothing, so the next identical call goes to the model."""
    define_agent("a", "x")
    cache = ResponseCache("memory", secret="test")
    sim.script(Fault("status", status=400))
    async with make_orchestrator(sim, cache=cache) as orch:
        failed = await orch.execute_agent("a", "t")
        retried = await orch.execute_agent("a", "t")
    assert not failed.success and retried.success and not retried.cached
    assert cache.stats().entries == 1


async def test_replay_mode_serves_hits_and_refuses_misses_without_calling(sim: Simulator) -> None:
    """replay=True serves hits; a miss is a CacheMiss naming agent and task, and nothing is sent."""
    define_agent("a", "x")
    cache = ResponseCache("memory", secret="test")
    async with make_orchestrator(sim, cache=cache) as orch:
        recorded = await orch.execute_agent("a", "recorded task")
    async with make_orchestrator(sim, cache=cache, replay=True) as replayer:
        hit = await replayer.execute_agent("a", "recorded task")
        miss = await replayer.execute_agent("a", "never recorded")
    assert hit.cached and hit.output == recorded.output
    assert isinstance(miss.exception, CacheMiss)
    assert miss.exception.agent == "a" and miss.exception.task == "never recorded"
    assert "replay mode" in miss.errors[0] and "'never recorded'" in miss.errors[0]
    assert sim.stats()["requests"] == 1


async def test_replay_needs_no_api_key() -> None:
    """A replay orchestrator with no key and no endpoint serves a shared bundle's answers."""
    define_agent("a", "x")
    with serve() as server:
        cache = ResponseCache("memory", secret="test")
        async with make_orchestrator(server, cache=cache) as recorder:
            recorded = await recorder.execute_agent("a", "t")
    from claude_force_nb import AsyncAgentOrchestrator

    async with AsyncAgentOrchestrator(cache=cache, replay=True) as offline:
        replayed = await offline.execute_agent("a", "t")
    assert replayed.cached and replayed.output == recorded.output


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


async def test_limits_are_learned_from_the_first_answer() -> None:
    """With no limit configured, the first attempt goes alone and its headers state the server's limit; the
    rest of a 60-call fan-out at concurrency 30 is paced to it: no 429 (unpaced, a third of the first 30
    would meet one)."""
    define_agent("a", "x")
    rpm, calls = 1200, 60
    with serve(requests_per_minute=rpm) as limited:
        async with make_orchestrator(limited, max_concurrent=30) as orch:
            results = await orch.execute_multiple([("a", f"t{i}") for i in range(calls)])
        statuses = limited.stats()["by_status"]
    assert all(r.success for r in results)
    assert orch.limiter.learned == {"requests": rpm}
    assert statuses == {200: calls}
