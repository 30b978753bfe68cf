"""The offline demo: agents from a claude-force config, run concurrently through the real SDK.

With ANTHROPIC_API_KEY set, the calls go to the real API; without it, to the bundled simulator on loopback
(answers are marked "[simulated ...]"). Run with `python examples/demo.py` in the project's venv; it is the
script form of the quickstart notebook (`make demo` runs the notebook itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from claude_force_nb import AsyncAgentOrchestrator

CONFIG = Path(__file__).resolve().parent.parent / "notebooks" / ".claude" / "claude.json"


@contextlib.contextmanager
def endpoint() -> Iterator[str | None]:
    """The real API when a key is set, else a simulator started for the demo."""
    if os.environ.get("ANTHROPIC_API_KEY") and not os.environ.get("CLAUDE_FORCE_NB_SIMULATE"):
        yield None
        return
    from claude_force_nb.sim import serve

    with serve(ttft_s=0.05, per_token_s=0.002) as sim:
        print(f"No ANTHROPIC_API_KEY: answers are simulated by the bundled simulator at {sim.base_url}.")
        yield sim.base_url


async def main(base_url: str | None) -> None:
    async with AsyncAgentOrchestrator(
        CONFIG, base_url=base_url, max_concurrent=8, enable_cache=False
    ) as orch:
        print(f"{len(orch.agents)} agents, {len(orch.workflows)} workflows from {CONFIG.name}")
        review = await orch.execute_agent(
            "code-reviewer", "Review this function:\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n"
        )
        print("\n--- one call ---\n" + review.output[:400])
        print(review.summary())
        tasks = [
            (agent, f"Assess the module '{m}' of the standard library.")
            for m in ("json", "csv", "heapq")
            for agent in ("code-reviewer", "security-auditor")
        ]
        results = await orch.execute_multiple(tasks)
        print(f"\n--- fan-out: {len(results)} calls ---")
        for result in results:
            print(result.summary())
        workflow = await orch.run_workflow("bug-fix", "mean([]) raises ZeroDivisionError")
        print(f"\n--- workflow bug-fix: {'succeeded' if workflow.success else 'failed'} ---")
        for step in workflow:
            print(step.summary())
        frame = orch.runs.to_frame()
        print("\n--- run log ---")
        print(
            frame[["agent", "status", "attempts", "input_tokens", "output_tokens", "cost_usd", "latency_s"]]
        )
        print(f"\ntotal cost ${frame['cost_usd'].sum():.4f} over {len(frame)} calls")


if __name__ == "__main__":
    with endpoint() as url:
        asyncio.run(main(url))
