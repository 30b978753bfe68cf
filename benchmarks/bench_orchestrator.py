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
from typing import Any

import anthropic

from claude_force_nb import AsyncAgentOrchestrator, define_agent
from claude_force_nb._agents import build_user_turn
from claude_force_nb.sim import serve

AGENT_PROMPT = "You are a terse benchmark agent."
MODEL = "claude-haiku-5-5"
MAX_TOKENS = 64


def tasks(n: int) -> list[str]:
    return [f"benchmark task number {i}" for i in range(n)]


async def bare_sdk(
    base_url: str, items: list[str], concurrency: int, transport: str, *, raw: bool = False
) -> float:
    """The baseline: the same requests through a bare client, a semaphore and gather. Returns seconds.

    `raw=True` reads the JSON body instead of building the SDK's pydantic Message and turns the SDK's
    OpenTelemetry spans off, as our backend does: the like-for-like baseline that isolates the orchestrator's
    own overhead.
    """
    http_client = anthropic.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = anthropic.AsyncAnthropic(
        base_url=base_url, api_key="bench", max_retries=0, http_client=http_client
    )
    semaphore = asyncio.Semaphore(concurrency)

    async def one(task: str) -> str:
        kwargs: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": MAX_TOKENS,
            "system": AGENT_PROMPT,
            "messages": [{"role": "user", "content": build_user_turn(task)}],
        }
        async with semaphore:
            if raw:
                response = await client.messages.with_raw_response.create(**kwargs)
                body = await response.json()
                return "".join(b["text"] for b in body["content"] if b["type"] == "text")
            message = await client.messages.create(**kwargs)
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
    runs: dict[str, list[float]] = {"bare": [], "ours": [], "raw": [], "httpx": []}
    with serve(process=True, min_output_tokens=20, max_output_tokens=60) as sim:
        for _ in range(rounds):
            runs["bare"].append(asyncio.run(bare_sdk(sim.base_url, items, 50, "aiohttp")))
            runs["ours"].append(asyncio.run(orchestrated(sim.base_url, items, 50)))
            runs["raw"].append(asyncio.run(bare_sdk(sim.base_url, items, 50, "aiohttp", raw=True)))
            runs["httpx"].append(asyncio.run(bare_sdk(sim.base_url, items, 50, "httpx")))
    rps = {name: calls / statistics.median(seconds) for name, seconds in runs.items()}
    ratio = rps["ours"] / rps["bare"]

    def row(name: str, value: float) -> tuple[str, ...]:
        return (name, f"{value:,.0f}", f"{1000 / value:.3f}", f"{value / rps['bare']:.2f}")

    print_table(
        f"1. Overhead: {calls} calls, zero latency, concurrency 50, median of {rounds} alternating rounds",
        ("client (same simulator, same requests)", "calls/s", "per-call ms", "ratio"),
        [
            row("baseline: bare AsyncAnthropic (aiohttp) + Semaphore + gather", rps["bare"]),
            row("AsyncAgentOrchestrator.execute_multiple", rps["ours"]),
            row("like for like: bare client, raw JSON body, no SDK spans (as our backend)", rps["raw"]),
            row("for reference: bare AsyncAnthropic, SDK default httpx transport", rps["httpx"]),
        ],
    )
    own = rps["ours"] / rps["raw"]
    print(f"target: ratio >= 0.90 -> {'met' if ratio >= 0.90 else 'NOT met'} ({ratio:.2f}); ")
    print(f"the orchestrator's own overhead, against the like-for-like client: {own:.2f}")
    return ratio


def efficiency(calls: int, latency_s: float, concurrency: int, rounds: int) -> float:
    ideal = calls / concurrency * latency_s
    walls: list[float] = []
    bare: list[float] = []
    options = {"ttft_s": latency_s, "per_token_s": 0.0, "min_output_tokens": 20, "max_output_tokens": 60}
    with serve(process=True, **options) as sim:
        for _ in range(rounds):
            walls.append(asyncio.run(orchestrated(sim.base_url, tasks(calls), concurrency)))
            bare.append(asyncio.run(bare_sdk(sim.base_url, tasks(calls), concurrency, "aiohttp")))
    wall, bare_wall = statistics.median(walls), statistics.median(bare)
    ratio = wall / ideal
    print_table(
        f"2. Concurrency efficiency: {calls} calls of {latency_s * 1000:.0f} ms, concurrency {concurrency}, "
        f"median of {rounds} alternating rounds",
        ("measure", "seconds", "ratio to ideal"),
        [
            ("ideal (calls / concurrency x latency)", f"{ideal:.2f}", "1.00"),
            ("execute_multiple", f"{wall:.2f}", f"{ratio:.3f}"),
            (
                "for reference: bare AsyncAnthropic + Semaphore + gather",
                f"{bare_wall:.2f}",
                f"{bare_wall / ideal:.3f}",
            ),
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
        efficiency(1000, 0.1, 50, 5)


if __name__ == "__main__":
    main()
