"""A worker process for the coordination tests and benchmark: one orchestrator on a shared scope runs a
fan-out against a simulator and prints one JSON line of what happened.

    python tests/coord_worker.py '{"redis": ..., "scope": ..., "owner": ..., "base_url": ..., "calls": 50}'

It prints `started` once its orchestrator is built, so a test knows when it may kill it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any

from claude_force_nb import AsyncAgentOrchestrator, RetryPolicy, define_agent
from claude_force_nb._coord import Coordination


async def run(options: dict[str, Any]) -> dict[str, Any]:
    define_agent("a", "You answer briefly.")
    coordination = Coordination(
        options["redis"],
        scope=options["scope"],
        owner=options["owner"],
        lease_s=options.get("lease_s", 10.0),
        heartbeat_s=options.get("heartbeat_s", 0.5),
    )
    pad = "x" * options.get("prompt_chars", 0)
    calls = [("a", f"{options['owner']} task {i} {pad}") for i in range(options["calls"])]
    async with AsyncAgentOrchestrator(
        base_url=options["base_url"],
        enable_cache=False,
        coordination=coordination,
        budget_usd=options.get("budget_usd"),
        max_concurrent=options.get("concurrency", 20),
        max_tokens=options.get("max_tokens", 300),
        model=options.get("model", "claude-sonnet-4-6"),
        requests_per_minute=options.get("rpm"),
        input_tokens_per_minute=options.get("itpm"),
        retry_policy=RetryPolicy(
            max_retries=options.get("max_retries", 3), base_delay_s=0.05, max_delay_s=2.0
        ),
    ) as orch:
        print("started", flush=True)
        results = await orch.execute_multiple(calls)
    await coordination.aclose()
    return {
        "owner": options["owner"],
        "statuses": dict(Counter(r.status for r in results)),
        "spent": sum(r.cost_usd for r in results if r.success),
        "attempts": sum(r.attempts for r in results),
    }


if __name__ == "__main__":
    summary = asyncio.run(run(json.loads(sys.argv[1])))
    print(json.dumps(summary), flush=True)
