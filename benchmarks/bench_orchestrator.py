"""Orchestrator benchmarks: overhead against the bare SDK, and concurrency efficiency.

Both run against the bundled simulator in a separate process (so the server does not share the client's
GIL), through the real `anthropic` SDK, and print a table with ratios against a baseline measured in the
same run:

1. Overhead: N calls at zero simulated latency, concurrency 50. `execute_multiple` against a bare
   `AsyncAnthropic` + `asyncio.Semaphore` + `gather` doing the same requests. Target: >= 0.90 of the bare
   client's throughput. Rounds alternate between the two so drift on a shared machine hits both alike.
2. Concurrency efficiency: 1,000 calls of 100 ms simulated latency at concurrency 50; the ideal wall time
   is 1000 / 50 * 0.1 = 2.0 s. Target: <= 1.15x the ideal.

Run: `python benchmarks/bench_orchestrator.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import anthropic

from claude_force_nb import AsyncAgentOrchestrator, define_agent
from claude_force_nb._agents import build_user_turn
from claude_force_nb.sim import serve

AGENT_PROMPT = "You are a terse benchmark agent."
MODEL = "claude-haiku-5-5"
MAX_TOKENS = 64


def tasks(n: int) -> list[str]:
    return [f"benchmark task number {i}" for i in range(n)]


async def bare_sdk(base_url: str, items: list[str], concurrency: int, transport: str) -> float:
    """The baseline: the same requests through a bare client, a semaphore and gather. Returns seconds."""
    http_client = anthropic.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = anthropic.AsyncAnthropic(
        base_url=base_url, api_key="bench", max_retries=0, http_client=http_client
    )
    semaphore = asyncio.Semaphore(concurrency)

    async def one(task: str) -> str:
        async with semaphore:
            message = await client.messages.create(
                model=MODEL,
                max_tokens=MAX_TOKENS,
                system=AGENT_PROMPT,
                messages=[{"role": "user", "content": build_user_turn(task)}],
            )
            return "".join(b.text for b in message.content if b.type == "text")

    await one("warm-up")
    start = time.perf_counter()
    await asyncio.gather(*(one(t) for t in items))
    elapsed = time.perf_counter() - start
    await client.close()
    return elapsed


async def orchestrated(base_url: str, items: list[str], concurrency: int) -> float:
    """The same requests through `execute_multiple` (cache off: the bare client has none). Returns seconds."""
    define_agent("bench", AGENT_PROMPT)
    async with AsyncAgentOrchestrator(
        base_url=base_url,
        api_key="bench",
        model=MODEL,
        max_tokens=MAX_TOKENS,
        max_concurrent=concurrency,
        enable_cache=False,
    ) as orch:
        await orch.execute_agent("bench", "warm-up")
        start = time.perf_counter()
        results = await orch.execute_multiple([("bench", t) for t in items])
        elapsed = time.perf_counter() - start
    failed = [r for r in results if not r.success]
    if failed:
        raise SystemExit(f"{len(failed)} orchestrated calls failed, e.g. {failed[0].errors}")
    return elapsed


def print_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def overhead(calls: int, rounds: int) -> float:
    items = tasks(calls)
    bare: list[float] = []
    bare_httpx: list[float] = []
    ours: list[float] = []
    with serve(process=True, min_output_tokens=20, max_output_tokens=60) as sim:
        for _ in range(rounds):
            bare.append(asyncio.run(bare_sdk(sim.base_url, items, 50, "aiohttp")))
            ours.append(asyncio.run(orchestrated(sim.base_url, items, 50)))
            bare_httpx.append(asyncio.run(bare_sdk(sim.base_url, items, 50, "httpx")))
    bare_rps = calls / statistics.median(bare)
    ours_rps = calls / statistics.median(ours)
    httpx_rps = calls / statistics.median(bare_httpx)
    ratio = ours_rps / bare_rps

    def row(name: str, rps: float) -> tuple[str, ...]:
        return (name, f"{rps:,.0f}", f"{1000 / rps:.3f}", f"{rps / bare_rps:.2f}")

    print_table(
        f"1. Overhead: {calls} calls, zero latency, concurrency 50, median of {rounds} alternating rounds",
        ("client (same simulator, same requests)", "calls/s", "per-call ms", "ratio"),
        [
            row("baseline: bare AsyncAnthropic (aiohttp transport) + Semaphore + gather", bare_rps),
            row("AsyncAgentOrchestrator.execute_multiple (aiohttp transport, the default)", ours_rps),
            row("for reference: bare AsyncAnthropic, SDK default httpx transport", httpx_rps),
        ],
    )
    print(f"target: ratio >= 0.90 -> {'met' if ratio >= 0.90 else 'NOT met'}")
    return ratio


def efficiency(calls: int, latency_s: float, concurrency: int, rounds: int) -> float:
    ideal = calls / concurrency * latency_s
    walls: list[float] = []
    with serve(
        process=True, ttft_s=latency_s, per_token_s=0.0, min_output_tokens=20, max_output_tokens=60
    ) as sim:
        for _ in range(rounds):
            walls.append(asyncio.run(orchestrated(sim.base_url, tasks(calls), concurrency)))
    wall = statistics.median(walls)
    ratio = wall / ideal
    print_table(
        f"2. Concurrency efficiency: {calls} calls of {latency_s * 1000:.0f} ms, concurrency {concurrency}",
        ("measure", "seconds", "ratio to ideal"),
        [
            ("ideal (calls / concurrency x latency)", f"{ideal:.2f}", "1.00"),
            ("execute_multiple", f"{wall:.2f}", f"{ratio:.3f}"),
        ],
    )
    print(f"target: <= 1.15x ideal -> {'met' if ratio <= 1.15 else 'NOT met'}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        overhead(300, 1)
        efficiency(200, 0.1, 50, 1)
    else:
        overhead(2000, 3)
        efficiency(1000, 0.1, 50, 3)


if __name__ == "__main__":
    main()
