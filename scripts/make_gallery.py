"""The chart gallery under docs/gallery/: the four charts, light and dark, for a 6-call and a 1,000-call run.

The runs are real: the package's orchestrator sends them through the real `anthropic` SDK to the bundled
simulator (loopback, with latency and a few overloaded errors, so retries show), with a memory response cache
(repeated tasks are cache hits) and, in the small run, one call refused by its own budget. Fixed seeds: the
same pictures every time, apart from wall-clock jitter.

    .venv/bin/python scripts/make_gallery.py            # writes docs/gallery/*.png
    .venv/bin/python scripts/make_gallery.py --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import random
from pathlib import Path

from matplotlib.figure import Figure

from claude_force_nb import AsyncAgentOrchestrator, CallSpec, define_agent
from claude_force_nb._limits import Budget
from claude_force_nb._plots import (
    attempts_frame,
    plot_cache,
    plot_cost,
    plot_latency,
    plot_timeline,
)
from claude_force_nb.sim import serve

ROOT = Path(__file__).resolve().parent.parent
AGENTS = {
    "code-reviewer": "claude-sonnet-4-6",
    "bug-investigator": "claude-opus-4-7",
    "fixer": "claude-haiku-4-5",
    "summarizer": "claude-haiku-4-5",
}


def _calls(count: int, seed: int) -> list[CallSpec]:
    rng = random.Random(seed)
    names = list(AGENTS)
    calls = []
    for index in range(count):
        # about a fifth of the tasks repeat an earlier one: cache hits once the first has finished
        topic = rng.randrange(max(1, index)) if index > 3 and rng.random() < 0.2 else index
        agent = names[topic % len(names)]
        calls.append(CallSpec(agent=agent, task=f"Review module {topic} of the payment service."))
    if count < 10:  # the small run: one call refused by its own budget, one repeat
        calls[-1] = CallSpec(agent="fixer", task="Propose a fix.", budget=Budget(0.0))
        calls[-2] = CallSpec(agent=calls[0].agent, task=calls[0].task)
    return calls


async def _run(count: int, base_url: str, concurrency: int) -> AsyncAgentOrchestrator:
    calls = _calls(count, seed=count)
    async with AsyncAgentOrchestrator(
        base_url=base_url, api_key="sim", cache_backend="memory", max_concurrent=concurrency
    ) as orch:
        if count < 10:  # two waves, so the repeat finds the first answer cached
            await orch.execute_multiple(calls[:-2])
            await orch.execute_multiple(calls[-2:])
        else:
            await orch.execute_multiple(calls)
    return orch


def _draw(orch: AsyncAgentOrchestrator, theme: str, path: Path) -> None:
    frame = orch.runs.to_frame()
    figure = Figure(figsize=(15, 9.5), layout="constrained")
    grid = figure.subplots(2, 2)
    plot_timeline(frame, attempts=attempts_frame(orch.runs), ax=grid[0][0], theme=theme)  # type: ignore[arg-type]
    plot_latency(frame, ax=grid[0][1], theme=theme)  # type: ignore[arg-type]
    plot_cost(frame, ax=grid[1][0], theme=theme)  # type: ignore[arg-type]
    stats = orch.cache.stats() if orch.cache is not None else None
    plot_cache(frame, stats=stats, ax=grid[1][1], theme=theme)  # type: ignore[arg-type]
    figure.savefig(path, dpi=72)  # a bare Figure renders with Agg: no pyplot, no backend to choose
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, model in AGENTS.items():
        define_agent(name, f"You are the {name}.", model=model)
    options = {"seed": 3, "ttft_s": 0.05, "per_token_s": 0.0015, "fault_rates": {"overloaded": 0.04}}
    with serve(**options) as sim:
        for count, concurrency in ((6, 2), (1000, 40)):
            orch = asyncio.run(_run(count, sim.base_url, concurrency))
            for theme in ("light", "dark"):
                _draw(orch, theme, args.out / f"{theme}_{count}_calls.png")


if __name__ == "__main__":
    main()
