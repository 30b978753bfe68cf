"""Message Batches benchmark: 10,000 items through the simulator's batch endpoints, against baselines.

The simulator runs in a separate process with fast batch processing (the batch ends as soon as it is made),
so what is timed is the client: building and sending the batch, polling, streaming the JSONL results and
turning each line into a priced, recorded AgentResult. Answers are about 2 KB each. Printed:

1. Client wall time: `submit_batch` and `wait()` (results collected), against a bare SDK loop that only
   reads the same batch's results (`client.messages.batches.results`), measured in the same run.
2. Peak RSS growth of this process over the batch run (target: < 50 MB for 10,000 items of 2 KB answers;
   the answers themselves are about 20 MB and are kept, once, in the results).
3. Cost of the same workload sent interactively (`execute_multiple`) and as a batch: the ratio must be the
   rate card's batch factor, 0.50.

Run: `python benchmarks/bench_batches.py [--quick] [--items N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time

import anthropic

from claude_force_nb import AsyncAgentOrchestrator, define_agent
from claude_force_nb.sim import serve

MODEL = "claude-haiku-5-5"
ANSWER_TOKENS = 500  # about 2 KB of text at the simulator's 4 characters a token


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


async def bare_results(base_url: str, batch_id: str) -> tuple[float, int]:
    """Baseline: read one ended batch's results with the bare SDK and do nothing with them."""
    async with anthropic.AsyncAnthropic(base_url=base_url, api_key="bench", max_retries=0) as client:
        started = time.perf_counter()
        count = 0
        async for _ in await client.messages.batches.results(batch_id):
            count += 1
        return time.perf_counter() - started, count


async def run(n: int) -> None:
    define_agent("bench", "You are a terse benchmark agent.", max_tokens=ANSWER_TOKENS + 50)
    calls = [("bench", f"benchmark item {i}") for i in range(n)]
    with serve(
        process=True,
        batch_items_per_s=1e9,
        min_output_tokens=ANSWER_TOKENS,
        max_output_tokens=ANSWER_TOKENS,
    ) as sim:
        options = {
            "base_url": sim.base_url,
            "api_key": "bench",
            "model": MODEL,
            "enable_cache": False,
            "max_concurrent": 50,
        }
        async with AsyncAgentOrchestrator(**options) as warm:  # import the SDK, open connections, warm up
            await warm.execute_batch(calls[:20], poll_interval=0.05, reuse_open=False)

        rss_before = peak_rss_mb()
        async with AsyncAgentOrchestrator(**options) as orch:
            started = time.perf_counter()
            job = await orch.submit_batch(calls, reuse_open=False)
            submitted = time.perf_counter()
            batch_results = await job.wait(poll_interval=0.05)
            collected = time.perf_counter()
        rss_growth = peak_rss_mb() - rss_before
        answer_kb = sum(len(r.output.encode()) for r in batch_results) / len(batch_results) / 1024
        batch_cost = sum(r.cost_usd for r in batch_results)
        ok = sum(r.success for r in batch_results)
        bare_s, bare_count = await bare_results(sim.base_url, job.id)
        del batch_results

        async with AsyncAgentOrchestrator(**options) as orch:
            started_i = time.perf_counter()
            interactive = await orch.execute_multiple(calls)
            interactive_s = time.perf_counter() - started_i
        interactive_cost = sum(r.cost_usd for r in interactive)

    submit_s, collect_s = submitted - started, collected - submitted
    print(f"{n} items, {answer_kb:.1f} KB answers, {ok} succeeded, model {MODEL}")
    print()
    print("| measure | value | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| submit_batch (build + create) | {submit_s:.2f} s | | |")
    print(
        f"| wait() (poll + stream + record {n} results) | {collect_s:.2f} s | bare SDK results read "
        f"({bare_count} lines): {bare_s:.2f} s | {collect_s / bare_s:.2f}x |"
    )
    total = submit_s + collect_s
    print(
        f"| client wall time, batch | {total:.2f} s | interactive `execute_multiple`, zero latency: "
        f"{interactive_s:.2f} s | {total / interactive_s:.2f}x |"
    )
    print(f"| peak RSS growth over the batch run | {rss_growth:.1f} MB | target < 50 MB | |")
    print(
        f"| cost | batch ${batch_cost:.4f} | interactive ${interactive_cost:.4f} | "
        f"{batch_cost / interactive_cost:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000, help="items in the batch (default 10,000)")
    parser.add_argument("--quick", action="store_true", help="1,000 items")
    args = parser.parse_args()
    asyncio.run(run(1_000 if args.quick else args.items))


if __name__ == "__main__":
    main()
