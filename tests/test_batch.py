"""Message Batches through the orchestrator: the real SDK against the simulator's batch endpoints."""

from __future__ import annotations

import asyncio
import json
import math
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from claude_force_nb import BatchError, BudgetExceededError, define_agent
from claude_force_nb._batch_registry import REGISTRY_FILE
from claude_force_nb._pricing import RateCard
from claude_force_nb._request import Usage
from claude_force_nb.sim import Fault, Simulator, serve

from .conftest import make_orchestrator

POLL = 0.02


def calls(n: int, agent: str = "a", prefix: str = "row") -> list[tuple[str, str]]:
    return [(agent, f"{prefix} {i}") for i in range(n)]


def creates(simulator: Simulator) -> list[dict[str, Any]]:
    """The batch-create requests the simulator saw."""
    return [
        r
        for r in simulator.requests
        if r["method"] == "POST" and r["path"] == "/v1/messages/batches" and r["status"] == 200
    ]


def referee_cost(simulator: Simulator, model: str) -> float:
    """What the simulator's own batch token counts cost at batch prices (independent of our records)."""
    stats = simulator.stats()
    usage = Usage(
        input_tokens=stats["batch_input_tokens"],
        output_tokens=stats["batch_output_tokens"],
        cache_read_input_tokens=stats["batch_cache_read_tokens"],
        cache_creation_input_tokens=stats["batch_cache_write_tokens"],
    )
    return RateCard.default().cost(model, usage, batch=True)


async def test_execute_batch_returns_results_in_input_order_at_batch_prices(sim: Simulator) -> None:
    """Every item comes back in input order, priced at the rate card's batch discount (checked against the
    simulator's token counts), with run-log rows in mode "batch" carrying the API's batch id."""
    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim) as orch:
        results = await orch.execute_batch(calls(12), poll_interval=POLL)
        frame = orch.runs.to_frame()
        model = orch.model
    assert [r.success for r in results] == [True] * 12
    assert all(f"row {i}" in r.output for i, r in enumerate(results))
    batch_ids = {r.metadata["batch_id"] for r in results}
    assert len(batch_ids) == 1 and next(iter(batch_ids)).startswith("msgbatch_")
    assert sum(r.cost_usd for r in results) == pytest.approx(referee_cost(sim, model))
    full = sum(RateCard.default().cost(model, _usage(r)) for r in results)
    assert sum(r.cost_usd for r in results) == pytest.approx(full * 0.5)
    assert set(frame["mode"]) == {"batch"} and set(frame["batch_id"]) == batch_ids
    assert sim.stats()["requests"] == 0  # nothing went through /v1/messages


def _usage(result: Any) -> Usage:
    return Usage(
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cache_creation_input_tokens=result.cache_creation_input_tokens,
        cache_read_input_tokens=result.cache_read_input_tokens,
    )


async def test_cache_first_and_batch_answers_serve_interactive_calls_and_replay(
    sim: Simulator, tmp_path: Path
) -> None:
    """Only cache misses go into the batch; batch answers are stored under the interactive key (a later
    interactive run is all hits); replay mode serves them and sends no batch for a miss."""
    define_agent("a", "Answer briefly.")
    cache_dir = tmp_path / "cache"
    async with make_orchestrator(sim, enable_cache=True, cache_dir=cache_dir) as orch:
        await orch.execute_multiple(calls(2))
        results = await orch.execute_batch(calls(5), poll_interval=POLL)
        assert [r.cached for r in results] == [True, True, False, False, False]
        assert sim.stats()["batch_items"] == 3
        again = await orch.execute_multiple(calls(5))
        assert all(r.cached and r.success for r in again)
        assert [r.output for r in again] == [r.output for r in results]
    sim.reset()
    async with make_orchestrator(sim, enable_cache=True, cache_dir=cache_dir, replay=True) as replay:
        replayed = await replay.execute_batch([*calls(5), ("a", "never asked")], poll_interval=POLL)
    assert [r.success for r in replayed] == [True] * 5 + [False]
    assert "replay mode" in replayed[5].errors[0]
    assert sim.stats()["batch_calls"] == 0


async def test_budget_refuses_a_batch_it_cannot_cover_before_sending(sim: Simulator) -> None:
    """A batch whose worst case at batch prices exceeds the budget is refused whole, naming the amount;
    nothing is sent. A covered one reserves, then settles to the real costs and holds nothing after."""
    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim, budget_usd=0.001) as poor:
        with pytest.raises(BudgetExceededError, match=r"need up to \$\d+\.\d+ at batch prices"):
            await poor.submit_batch(calls(50))
        assert poor.budget.reserved_usd == 0 and poor.budget.spent_usd == 0
    assert sim.stats()["batch_calls"] == 0
    async with make_orchestrator(sim, budget_usd=5.0) as orch:
        job = await orch.submit_batch(calls(4))
        assert orch.budget.reserved_usd > 0
        results = await job.wait(poll_interval=POLL)
        assert orch.budget.reserved_usd == pytest.approx(0.0, abs=1e-12)
        assert orch.budget.spent_usd == pytest.approx(sum(r.cost_usd for r in results))
        assert orch.budget.spent_usd == pytest.approx(referee_cost(sim, orch.model))


async def test_retryable_errored_items_are_resubmitted_up_to_max_retries() -> None:
    """errored items (overloaded) go into follow-up batches until they succeed; with no retries they fail
    with the API's error."""
    define_agent("a", "Answer briefly.")
    with serve(batch_error_rate=0.3, seed=5) as flaky:
        async with make_orchestrator(flaky) as orch:
            job = await orch.submit_batch(calls(20), max_retries=10)
            results = await job.wait(poll_interval=POLL)
            assert all(r.success for r in results)
            assert len(job.batch_ids) > 1
            assert max(r.attempts for r in results) > 1
            status = await job.status()
            assert status.resubmitted == sum(r.attempts - 1 for r in results)
            assert status.total == 20 and status.succeeded == 20
            once = await orch.execute_batch(calls(20, prefix="other"), max_retries=0, poll_interval=POLL)
    failed = [r for r in once if not r.success]
    assert failed and all("overloaded_error" in r.errors[0] for r in failed)


async def test_jobs_are_split_at_the_size_limits() -> None:
    """More requests (or bytes) than one batch may hold go out in several batches, all collected."""
    define_agent("a", "Answer briefly.")
    with serve(batch_max_requests=3, batch_max_bytes=3000) as small:
        async with make_orchestrator(small) as orch:
            by_count = await orch.submit_batch(calls(7), max_requests_per_batch=3)
            assert len(by_count.batch_ids) == 3
            assert all(r.success for r in await by_count.wait(poll_interval=POLL))
            long = [("a", f"{i} " + "x" * 900) for i in range(6)]
            by_size = await orch.submit_batch(long, max_bytes_per_batch=3000)
            assert len(by_size.batch_ids) >= 3
            assert all(r.success for r in await by_size.wait(poll_interval=POLL))


async def test_cancel_and_expiry_fail_the_items_with_the_reason_and_release_the_budget() -> None:
    """Cancelled and expired items become failed results saying why; their reservations are released."""
    define_agent("a", "Answer briefly.")
    with serve(batch_items_per_s=0.0, batch_expiry_s=3600.0) as stuck:
        async with make_orchestrator(stuck, budget_usd=5.0) as orch:
            job = await orch.submit_batch(calls(3))
            status = await job.cancel()
            assert status.processing_status == "canceling"
            results = await job.wait(poll_interval=POLL)
            assert [r.status for r in results] == ["cancelled"] * 3
            assert "canceled" in results[0].errors[0]
            assert orch.budget.reserved_usd == pytest.approx(0.0, abs=1e-12) and orch.budget.spent_usd == 0
    with serve(batch_items_per_s=0.0, batch_expiry_s=0.2) as expiring:
        async with make_orchestrator(expiring) as orch:
            results = await orch.execute_batch(calls(2), poll_interval=POLL)
    assert [r.success for r in results] == [False, False] and "expired" in results[0].errors[0]


async def test_a_bad_item_fails_alone(sim: Simulator) -> None:
    """An unknown agent or a bad argument fails its own item; the others are sent and succeed."""
    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim) as orch:
        results = await orch.execute_batch(
            [
                ("a", "one"),
                ("nobody", "two"),
                {"agent": "a", "task": "three", "temperature": 7.0},
                ("a", "four"),
            ],
            poll_interval=POLL,
        )
    assert [r.success for r in results] == [True, False, False, True]
    assert results[1].status == "invalid" and "nobody" in results[1].errors[0]
    assert sim.stats()["batch_items"] == 2


async def test_http_errors_on_batch_calls_are_retried_by_our_policy(sim: Simulator) -> None:
    """A 529 on create, a 500 on retrieve and a 429 on the results are retried (the SDK never retries)."""
    define_agent("a", "Answer briefly.")
    sim.script(Fault("overloaded"), times=1, match="/v1/messages/batches ")
    sim.script(Fault("server_error"), times=1, match="/v1/messages/batches/msgbatch")
    sim.script(Fault("rate_limit", retry_after=0.01), times=1, match="/results")
    async with make_orchestrator(sim) as orch:
        results = await orch.execute_batch(calls(2), poll_interval=POLL)
    assert all(r.success for r in results)
    assert sim.stats()["faults"] == {"overloaded": 1, "rate_limit": 1, "server_error": 1}
    assert len(creates(sim)) == 1


async def test_resubmitting_an_open_job_returns_it_instead_of_paying_twice(sim: Simulator) -> None:
    """The same calls submitted again while their job is open give back that job; no second batch."""
    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim) as orch:
        first = await orch.submit_batch(calls(3))
        second = await orch.submit_batch(calls(3))
        assert second.reused and second is first  # the live job itself: no second collector, no double rows
        assert len(creates(sim)) == 1 and len(orch.runs) == 3
        results = await second.wait(poll_interval=POLL)
        assert all(r.success for r in results)
        third = await orch.submit_batch(calls(3))  # the job was collected: a new run sends a new batch
        assert not third.reused and third.id != first.id
        await third.wait(poll_interval=POLL)


async def test_registry_is_owner_only_and_lists_jobs(sim: Simulator, isolated_environment: Path) -> None:
    """The registry file in the user's data folder is 0600 and holds the job under its batch id."""
    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim) as orch:
        job = await orch.submit_batch(calls(2))
        await job.wait(poll_interval=POLL)
        jobs = orch.batch_jobs()
    path = orch._data_dir / REGISTRY_FILE
    assert str(path).startswith(str(isolated_environment))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [j.batch_ids[0] for j in jobs] == [job.id] and jobs[0].state == "collected"


_RESUME_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from claude_force_nb import AsyncAgentOrchestrator

    async def main():
        async with AsyncAgentOrchestrator(base_url=sys.argv[1], cache_dir=sys.argv[3]) as orch:
            job = await orch.resume_batch(sys.argv[2])
            results = await job.wait(poll_interval=0.02)
            print(json.dumps([[r.success, r.output, r.metadata.get("batch_id")] for r in results]))

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_a_fresh_process_resumes_and_collects_into_the_cache(tmp_path: Path) -> None:
    """A job submitted here is collected by another Python process from the registry alone; its answers land
    in the shared cache under the interactive keys, so this process then serves them as hits."""
    define_agent("a", "Answer briefly.")
    cache_dir = tmp_path / "cache"
    with serve(batch_items_per_s=4.0) as slow:
        async with make_orchestrator(slow, enable_cache=True, cache_dir=cache_dir) as orch:
            job = await orch.submit_batch(calls(4))
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _RESUME_SCRIPT, slow.base_url, job.id, str(cache_dir)],
            capture_output=True,
            text=True,
            timeout=600,  # generous: a loaded machine starts Python and imports the SDK slowly
            env=os.environ.copy(),
            check=False,
        )
        assert done.returncode == 0, done.stderr
        collected = json.loads(done.stdout.strip().splitlines()[-1])
        assert [row[0] for row in collected] == [True] * 4, (done.stdout, done.stderr)
        assert {row[2] for row in collected} == {job.id}
        async with make_orchestrator(slow, enable_cache=True, cache_dir=cache_dir) as orch:
            again = await orch.execute_multiple(calls(4))
        assert all(r.cached for r in again) and [r.output for r in again] == [row[1] for row in collected]
        assert slow.stats()["requests"] == 0


async def test_resuming_with_another_key_or_an_unknown_id_is_a_clear_error(sim: Simulator) -> None:
    """A batch id unknown to the registry, or unknown to the API for this key, is a BatchError saying so."""
    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim) as orch:
        job = await orch.submit_batch(calls(1))
        with pytest.raises(BatchError, match="no batch job"):
            await orch.resume_batch("msgbatch_nope")
        await job.wait(poll_interval=POLL)
    async with make_orchestrator(sim, api_key="sk-another-workspace") as other:
        with pytest.raises(BatchError, match="another workspace or key"):
            await other.resume_batch(job.id)


async def test_status_and_frame(sim: Simulator) -> None:
    """status() sums the API's counts; to_frame() has one row per input with the batch id."""
    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim) as orch:
        job = await orch.submit_batch([*calls(3), ("nobody", "x")])
        with pytest.raises(BatchError, match="still running"):
            job.results()
        await job.wait(poll_interval=POLL)
        status = await job.status()
    assert status.processing_status == "ended" and status.total == 4
    assert status.failed_locally == 1
    frame = job.to_frame()
    assert list(frame["index"]) == [0, 1, 2, 3]
    assert list(frame["success"]) == [True, True, True, False]
    assert frame["batch_id"].iloc[0] == job.id
    assert not math.isnan(frame["cost_usd"].iloc[0])


async def test_batch_rows_record_the_discount_as_saving_and_plot_apart(sim: Simulator) -> None:
    """A batch row saves the interactive price minus the batch price; the cost chart shows batch rows as
    their own "model (batch)" bars, with the discount among the savings."""
    from matplotlib.figure import Figure

    from claude_force_nb import plot_cost

    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim) as orch:
        await orch.execute_multiple(calls(2, prefix="online"))
        results = await orch.execute_batch(calls(3), poll_interval=POLL)
        frame = orch.runs.to_frame()
    for r in results:
        assert r.cost_saved_usd == pytest.approx(RateCard.default().cost(r.model, _usage(r)) - r.cost_usd)
        assert r.cost_saved_usd == pytest.approx(r.cost_usd)  # a 50% discount saves as much as it costs
    ax = plot_cost(frame, ax=Figure().subplots())
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels.count(f"a · {results[0].model} (batch)") == 1 and f"a · {results[0].model}" in labels
    assert "saved by cache hits and the batch discount" in [t.get_text() for t in ax.get_legend().get_texts()]


async def test_interrupting_wait_leaves_the_batch_running_and_says_how_to_collect_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancelling wait() (a kernel interrupt) sends no cancel: the batch keeps running on the server, its
    reservations stay held, and the log says how to collect it later."""
    define_agent("a", "Answer briefly.")
    with serve(batch_items_per_s=0.0) as stuck:
        async with make_orchestrator(stuck, budget_usd=5.0) as orch:
            job = await orch.submit_batch(calls(2))
            waiting = asyncio.ensure_future(job.wait(poll_interval=POLL))
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert f"resume_batch({job.id!r})" in caplog.text
            assert (await job.status()).processing_status == "in_progress"
            assert orch.budget.reserved_usd > 0
        assert not [r for r in stuck.requests if r["path"].endswith("/cancel")]


async def test_a_request_the_api_refuses_fails_alone_with_the_api_message() -> None:
    """An item that passes our checks but that the API refuses (an unknown model here) fails with the API's
    error and is not resubmitted; the other items succeed."""
    define_agent("a", "Answer briefly.")
    with serve(models={"claude-haiku-5-5"}) as strict:
        async with make_orchestrator(strict, model="claude-haiku-5-5") as orch:
            job = await orch.submit_batch(
                [("a", "fine"), {"agent": "a", "task": "odd", "model": "claude-sonnet-5-5"}]
            )
            results = await job.wait(poll_interval=POLL)
    assert [r.success for r in results] == [True, False]
    assert "not_found_error" in results[1].errors[0] and "claude-sonnet-5-5" in results[1].errors[0]
    assert results[1].attempts == 1 and len(job.batch_ids) == 1


async def test_a_retired_model_is_refused_before_sending_and_fails_alone(sim: Simulator) -> None:
    """As for interactive calls, an item on a model the rate card says is retired fails before anything is
    sent, naming the replacement; the other items go."""
    define_agent("a", "Answer briefly.")
    async with make_orchestrator(sim) as orch:
        results = await orch.execute_batch(
            [("a", "fine"), {"agent": "a", "task": "old", "model": "claude-sonnet-4-5"}], poll_interval=POLL
        )
    assert [r.success for r in results] == [True, False]
    assert (
        type(results[1].exception).__name__ == "RetiredModelError"
        and "claude-sonnet-5-5" in results[1].errors[0]
    )
    assert sim.stats()["batch_items"] == 1
