"""Goodput under the API's rate limits, alone and coordinated through Redis.

The simulator (its own process) enforces a server-side limit of L requests per minute over short intervals,
as the API does. A fan-out of N calls (default 2,000) at concurrency 50 runs as:

(a) a bare `AsyncAnthropic` with its default retries (2), `Semaphore` + `gather`: the baseline;
(b) one orchestrator with no limit configured: it learns L from the first answer's headers and paces to it;
(c) four worker processes, each an orchestrator on the same coordination Redis and scope, N/4 calls each,
    also with learned limits (the first member's probe teaches the scope).

For each: goodput (calls that succeeded per second, as a share of L/60), how many calls were lost, and the
simulator's count of 429s as a share of its requests. Targets: (b) and (c) >= 0.90 of L with 429s < 1%.
Then the overhead of a coordinated call (shared budget and limits) against an in-process one, at zero
latency and concurrency 1 (target: < 0.5 ms a call on loopback Redis), beside what one bare round trip to
the same Redis adds to an in-process call (the floor: a coordinated call makes one).

Redis: CFNB_TEST_REDIS_URL or REDIS_URL, else a private redis-server if one is on PATH, else (c) and the
overhead are skipped with a note. Run: `python benchmarks/bench_limits.py [--calls N] [--rpm L]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic

from claude_force_nb import AsyncAgentOrchestrator, RetryPolicy, define_agent
from claude_force_nb._agents import build_user_turn
from claude_force_nb.sim import serve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cache import redis_url

AGENT_PROMPT = "You are a terse benchmark agent."
MODEL = "claude-haiku-5-5"
MAX_TOKENS = 64
CONCURRENCY = 50
RETRIES = RetryPolicy(max_retries=3, base_delay_s=0.05, max_delay_s=2.0)


def tasks(n: int, tag: str = "") -> list[str]:
    return [f"benchmark task {tag}{i}" for i in range(n)]


async def bare(base_url: str, n: int) -> tuple[int, float]:
    """(a): succeeded calls and seconds, with the SDK's default retries."""
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key="bench")
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(task: str) -> bool:
        async with semaphore:
            try:
                await client.messages.create(
                    model=MODEL,
                    max_tokens=MAX_TOKENS,
                    system=AGENT_PROMPT,
                    messages=[{"role": "user", "content": build_user_turn(task)}],
                )
            except anthropic.APIError:
                return False
            return True

    started = time.perf_counter()
    async with client:
        done = await asyncio.gather(*(one(t) for t in tasks(n)))
    return sum(done), time.perf_counter() - started


def orchestrator(base_url: str, **options: Any) -> AsyncAgentOrchestrator:
    define_agent("bench", AGENT_PROMPT)
    options.setdefault("max_concurrent", CONCURRENCY)
    return AsyncAgentOrchestrator(
        base_url=base_url,
        enable_cache=False,
        model=MODEL,
        max_tokens=MAX_TOKENS,
        retry_policy=RETRIES,
        **options,
    )


async def alone(base_url: str, n: int, **options: Any) -> tuple[int, float]:
    """(b): one orchestrator (limits learned unless given); succeeded calls and seconds."""
    async with orchestrator(base_url, **options) as orch:
        started = time.perf_counter()
        results = await orch.execute_multiple([("bench", t) for t in tasks(n)])
        return sum(r.success for r in results), time.perf_counter() - started


async def worker(options: dict[str, Any]) -> dict[str, Any]:
    """One of (c)'s processes: says it is ready, waits for the word to start, runs its share, reports."""
    async with orchestrator(
        options["base_url"], coordination=options["redis"], scope=options["scope"], owner=options["owner"]
    ) as orch:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        results = await orch.execute_multiple(
            [("bench", t) for t in tasks(options["calls"], options["owner"])]
        )
        return {"succeeded": sum(r.success for r in results), "finished_at": time.time()}


def coordinated(base_url: str, redis_url: str, n: int, processes: int = 4) -> tuple[int, float]:
    """(c): `processes` workers on one scope; succeeded calls and seconds from the common start."""
    scope = f"bench-{uuid.uuid4().hex[:8]}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                json.dumps(
                    {
                        "base_url": base_url,
                        "redis": redis_url,
                        "scope": scope,
                        "owner": f"w{i}-",
                        "calls": n // processes,
                    }
                ),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    for proc in procs:  # every worker has imported and built its orchestrator: start them together
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start_at = time.time()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    return sum(r["succeeded"] for r in reports), max(r["finished_at"] for r in reports) - start_at


async def overhead(base_url: str, redis_url: str, n: int, rounds: int = 5) -> tuple[float, float, float]:
    """Median seconds per call at zero latency, concurrency 1, with a budget and a limit: in process vs
    coordinated, and what one bare round trip to the same Redis (a PING after each in-process call) adds: the
    floor of any coordinated call. Rounds alternate between the three, so drift on a shared machine hits all
    alike."""
    import redis.asyncio

    extra: dict[str, Any] = {"budget_usd": 1000.0, "requests_per_minute": 10**7, "max_concurrent": 1}
    scope = f"bench-{uuid.uuid4().hex[:8]}"
    bare_redis = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with (
            orchestrator(base_url, **extra) as local,
            orchestrator(base_url, coordination=redis_url, scope=scope, **extra) as shared,
        ):
            timings: dict[str, list[float]] = {"local": [], "shared": [], "ping": []}
            for orch in (local, shared):
                await orch.execute_agent("bench", "warm up")  # connections, and a new ledger's rebuild window
            await bare_redis.ping()
            for r in range(rounds):
                for name, orch in (("local", local), ("shared", shared)):
                    started = time.perf_counter()
                    for task in tasks(n, f"o{r}-"):
                        await orch.execute_agent("bench", task)
                    timings[name].append((time.perf_counter() - started) / n)
                started = time.perf_counter()
                for task in tasks(n, f"p{r}-"):  # in process, plus one bare round trip per call
                    await local.execute_agent("bench", task)
                    await bare_redis.ping()
                timings["ping"].append((time.perf_counter() - started) / n)
    finally:
        await bare_redis.aclose()
    local_s, shared_s, ping_s = (statistics.median(timings[k]) for k in ("local", "shared", "ping"))
    return local_s, shared_s, ping_s - local_s


@contextmanager
def redis_server() -> Iterator[str | None]:
    """CFNB_TEST_REDIS_URL or REDIS_URL, else what the cache benchmark uses (a throwaway redis-server)."""
    given = os.environ.get("CFNB_TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    with redis_url() as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rpm", type=int, default=6_000, help="the simulator's requests per minute (L)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(json.loads(args.worker)))))
        return
    rows: list[tuple[str, int, float, dict[str, Any]]] = []
    per_s = args.rpm / 60
    with redis_server() as redis_url:
        cases: list[tuple[str, Any]] = [
            ("(a) bare AsyncAnthropic, default retries", lambda url: asyncio.run(bare(url, args.calls))),
            ("(b) one orchestrator, learned limits", lambda url: asyncio.run(alone(url, args.calls))),
        ]
        if redis_url:
            cases.append(
                ("(c) 4 processes through Redis", lambda url: coordinated(url, redis_url, args.calls))
            )
        for name, run in cases:
            with serve(process=True, requests_per_minute=args.rpm, ttft_s=0.02) as sim:
                succeeded, seconds = run(sim.base_url)
                rows.append((name, succeeded, seconds, sim.stats()))
        print(f"\nGoodput of {args.calls:,} calls at concurrency {CONCURRENCY} under a server limit of")
        print(f"L = {args.rpm:,} requests/minute ({per_s:.0f}/s, enforced over ~1 s), simulator in a process")
        print(f"{'case':<44} {'goodput / L':>11} {'lost':>6} {'429s':>6} {'429 share':>9} {'seconds':>8}")
        for name, succeeded, seconds, stats in rows:
            limited = stats["by_status"].get(429, 0)
            print(
                f"{name:<44} {succeeded / seconds / per_s:>11.3f} {args.calls - succeeded:>6} {limited:>6} "
                f"{limited / max(stats['requests'], 1):>9.2%} {seconds:>8.2f}"
            )
        if not redis_url:
            print("\n(c) and the overhead need Redis: set CFNB_TEST_REDIS_URL or put redis-server on PATH.")
            return
        with serve(process=True) as sim:
            local, shared, ping = asyncio.run(overhead(sim.base_url, redis_url, 100))
        print(
            f"\nOverhead at zero latency, concurrency 1, with a budget and a limit (median of 5 alternating "
            f"rounds of 100 calls): in process {local * 1e3:.3f} ms/call, coordinated {shared * 1e3:.3f} "
            f"ms/call: +{(shared - local) * 1e3:.3f} ms a call ({shared / local:.2f}x; target < 0.5 ms).\n"
            f"One bare round trip to the same Redis (a PING after each in-process call) adds "
            f"{ping * 1e3:.3f} ms a call here: a coordinated call makes one round trip (its reservation, "
            f"rate booking and the last call's settle in one script)."
        )


if __name__ == "__main__":
    main()
