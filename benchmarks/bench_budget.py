"""How much of a budget concurrent calls get to use: waiting for holds to settle vs refusing at once.

The issue's scenario: 300 calls on a $0.10 budget (`claude-sonnet-4-6`, `max_tokens=500`, so each call
reserves about $0.0078 and really costs about a quarter of that), against the bundled simulator in its own
process with a little latency, through the real `anthropic` SDK. Each row runs the batch at concurrency 1 and
50 and prints the fraction of the budget spent, recomputed from the simulator's own token counts (a referee,
not the orchestrator's counters), and the calls refused.

- `Budget` (the package's): a call whose worst case fits only once calls in flight settle waits for them.
- baseline, same run: a `Budget` whose `reserve` refuses at once whatever does not fit beside the current
  holds (how the package behaved before), to show what waiting buys at concurrency 50.

Run: `python benchmarks/bench_budget.py`.
"""

from __future__ import annotations

import asyncio

from claude_force_nb import AsyncAgentOrchestrator, BudgetExceededError, RateCard, Usage, define_agent
from claude_force_nb._limits import Budget, Reservation
from claude_force_nb.sim import Simulator, serve

MODEL = "claude-sonnet-4-6"
LIMIT_USD = 0.10
CALLS = 300


class RefuseAtOnceBudget(Budget):
    """The baseline policy: refuse a reservation that does not fit beside the holds of calls in flight."""

    async def reserve(
        self, worst_case_usd: float, *, what: str, priority: tuple[int, ...] = (0,)
    ) -> Reservation:
        limit = self.limit_usd
        if limit is not None and self.spent_usd + self.reserved_usd + worst_case_usd > limit + 1e-12:
            raise BudgetExceededError(f"{what}: refused before sending (does not fit beside the holds)")
        return await super().reserve(worst_case_usd, what=what, priority=priority)


def referee_spend(sim: Simulator) -> float:
    stats = sim.stats()
    usage = Usage(input_tokens=stats["input_tokens"], output_tokens=stats["output_tokens"])
    return RateCard.default().cost(MODEL, usage)


async def run(budget_type: type[Budget], concurrency: int) -> tuple[float, int]:
    with serve(ttft_s=0.02, per_token_s=0.0002, process=True) as sim:
        async with AsyncAgentOrchestrator(
            base_url=sim.base_url, enable_cache=False, max_concurrent=concurrency, max_tokens=500, model=MODEL
        ) as orch:
            orch.budget = budget_type(LIMIT_USD)
            results = await orch.execute_multiple([("bench", f"task {i}") for i in range(CALLS)])
        return referee_spend(sim) / LIMIT_USD, sum(r.status == "refused" for r in results)


async def main() -> None:
    define_agent("bench", "Answer briefly.")
    print(
        f"{CALLS} calls on a ${LIMIT_USD:.2f} budget ({MODEL}, max_tokens=500); use by the simulator's count"
    )
    print(f"{'policy':<40} {'concurrency':>11} {'budget used':>12} {'refused':>8}")
    used: dict[tuple[str, int], float] = {}
    for name, budget_type in (
        ("wait for holds (Budget)", Budget),
        ("baseline: refuse at once", RefuseAtOnceBudget),
    ):
        for concurrency in (1, 50):
            fraction, refused = await run(budget_type, concurrency)
            used[name, concurrency] = fraction
            print(f"{name:<40} {concurrency:>11} {fraction:>11.1%} {refused:>8}")
    ratio = used["wait for holds (Budget)", 50] / used["baseline: refuse at once", 50]
    print(
        f"at concurrency 50, waiting / refusing at once: {ratio:.2f}x the budget used (target: >= 90% used)"
    )


if __name__ == "__main__":
    asyncio.run(main())
