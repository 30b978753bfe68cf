"""How many requests per second the Messages-API simulator sustains, so we know it is never the bottleneck.

The simulator runs in a subprocess (`serve(process=True)`), so it does not share a GIL with the load
generator: a lean aiohttp client with a fixed number of workers (not the SDK, whose per-request overhead
would dominate).
JSON and streaming requests are measured separately, after a warm-up, with zero simulated latency.

    python benchmarks/bench_simulator.py [--requests 3000] [--concurrency 50] [--max-tokens 16] [--thread]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp

from claude_force_nb.sim import Simulator, serve

MODEL = "claude-sim-bench"


@dataclass(frozen=True, kw_only=True)
class Result:
    """One measured run."""

    mode: str
    requests: int
    concurrency: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def _drive(base_url: str, *, stream: bool, requests: int, concurrency: int, max_tokens: int) -> float:
    """Send `requests` requests with `concurrency` workers; returns the wall time in seconds."""
    url = f"{base_url}/v1/messages"
    headers = {"x-api-key": "bench", "anthropic-version": "2023-06-01", "content-type": "application/json"}
    remaining = requests
    failures = 0

    def payload(i: int) -> bytes:
        message = {"role": "user", "content": f"benchmark request {i}"}
        body = {"model": MODEL, "max_tokens": max_tokens, "messages": [message], "stream": stream}
        return json.dumps(body).encode()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            async with session.post(url, data=payload(remaining), headers=headers) as resp:
                data = await resp.read()
                # A stream only counts when it arrived whole.
                if resp.status != 200 or (stream and not data.endswith(b'{"type":"message_stop"}\n\n')):
                    failures += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{failures} of {requests} requests failed")
    return elapsed


def run(sim: Simulator, *, label: str, requests: int, concurrency: int, max_tokens: int) -> list[Result]:
    results = []
    for stream in (False, True):
        mode = f"{label} {'stream' if stream else 'json'}"
        for n in (min(500, requests), requests):  # a warm-up, then the measured run
            load = _drive(
                sim.base_url, stream=stream, requests=n, concurrency=concurrency, max_tokens=max_tokens
            )
            seconds = asyncio.run(load)
        results.append(Result(mode=mode, requests=requests, concurrency=concurrency, seconds=seconds))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per mode")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent client workers")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens per request (answer size)")
    parser.add_argument("--thread", action="store_true", help="also measure the in-process (thread) server")
    args = parser.parse_args()
    options = {"requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens}

    results = []
    with serve(process=True) as sim:
        results += run(sim, label="process", **options)
        served = sim.stats()["by_status"].get(200, 0)
    if args.thread:
        with serve() as sim:
            results += run(sim, label="thread", **options)

    print(f"{'server / mode':<16} {'requests':>9} {'concurrency':>12} {'seconds':>8} {'req/s':>8}")
    for r in results:
        print(f"{r.mode:<16} {r.requests:>9} {r.concurrency:>12} {r.seconds:>8.2f} {r.rate:>8.0f}")
    print(f"(the process server answered {served} requests with 200, warm-ups included)")
    print(f"(max_tokens={args.max_tokens}, zero simulated latency)")


if __name__ == "__main__":
    main()
