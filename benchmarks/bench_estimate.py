"""Cost-preview benchmarks: what a preview costs in time and requests, and what counted tokens buy a budget.

Both run against the bundled simulator in its own process, through the real `anthropic` SDK, and print
figures with ratios measured in the same run:

1. Preview: `await orch.estimate(calls)` of 1,000 calls with 800 distinct prompts (the rest repeat some,
   as rows of an `--inputs` frame often do): wall time and count_tokens requests sent (target: one per
   distinct prompt); then the same preview again (target: 0 requests), and the ratio of the two times.
2. Budget utilisation: the same 400 calls at concurrency 50 on the same budget, once reserving the byte
   upper bound of each prompt and once after a preview has counted them (reserving the count plus its
   margin): the fraction of the budget spent and the calls refused, and the ratio of the two utilisations.

Run: `python benchmarks/bench_estimate.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from claude_force_nb import AsyncAgentOrchestrator, define_agent
from claude_force_nb.sim import serve

MODEL = "claude-sonnet-5-5"
AGENT_PROMPT = "You review short code snippets and report defects as a bullet list."


def workload(n: int, distinct: int) -> list[tuple[str, str]]:
    return [
        ("bench", f"Review snippet {i % distinct}: x_{i % distinct} = compute({i % distinct})")
        for i in range(n)
    ]


def budget_workload(n: int) -> list[tuple[str, str]]:
    # Long prompts with a short answer, so the prompt's bound dominates a reservation.
    return [("bench", f"Call {i}. " + "Summarise this line of the log in one word. " * 60) for i in range(n)]


async def preview(base_url: str, n: int, distinct: int) -> None:
    async with AsyncAgentOrchestrator(
        base_url=base_url, enable_cache=False, model=MODEL, max_concurrent=50
    ) as orch:
        orch.backend()  # import the SDK before timing
        calls = workload(n, distinct)
        started = time.perf_counter()
        first = await orch.estimate(calls)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        second = await orch.estimate(calls)
        second_s = time.perf_counter() - started
    print(f"preview of {n:,} calls ({distinct:,} distinct prompts), concurrency 50")
    print(f"  first:  {first_s:6.3f} s, {first.requests_sent:,} count_tokens requests (target {distinct:,})")
    print(f"  second: {second_s:6.3f} s, {second.requests_sent:,} requests (target 0)")
    print(f"  second / first wall time: {second_s / first_s:.3f}")
    print(f"  {first.summary()}")


async def utilisation(base_url: str, n: int, *, counted: bool, budget: float) -> tuple[float, int]:
    async with AsyncAgentOrchestrator(
        base_url=base_url,
        enable_cache=False,
        model=MODEL,
        max_concurrent=50,
        budget_usd=budget,
        max_tokens=32,
    ) as orch:
        calls = budget_workload(n)
        if counted:
            await orch.estimate(calls)
        results = await orch.execute_multiple(calls)
        refused = sum(r.status == "refused" for r in results)
        return orch.budget.spent_usd / budget, refused


async def main(quick: bool) -> None:
    define_agent("bench", AGENT_PROMPT)
    n, distinct, calls = (200, 160, 100) if quick else (1000, 800, 400)
    with serve(
        process=True, ttft_s=0.02, per_token_s=0.0005, min_output_tokens=8, max_output_tokens=32
    ) as sim:
        await preview(sim.base_url, n, distinct)
        async with AsyncAgentOrchestrator(base_url=sim.base_url, enable_cache=False, model=MODEL) as probe:
            sample = await probe.estimate(budget_workload(1))
        # A budget for about 60% of the workload at its typical real cost: the end of the run is where the
        # bounds decide how many calls still fit.
        budget = 0.6 * calls * (sample.calls[0].cost_min + 20 * 10 / 1e6)
        byte_util, byte_refused = await utilisation(sim.base_url, calls, counted=False, budget=budget)
        count_util, count_refused = await utilisation(sim.base_url, calls, counted=True, budget=budget)
    print(f"budget utilisation, {calls} calls at concurrency 50 on a ${budget:.4f} budget")
    print(f"  byte-bound reservations: {byte_util:6.1%} spent, {byte_refused} refused")
    print(f"  counted reservations:    {count_util:6.1%} spent, {count_refused} refused")
    print(f"  counted / byte-bound utilisation: {count_util / byte_util:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    asyncio.run(main(parser.parse_args().quick))
