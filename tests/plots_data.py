"""Synthetic run records for the chart tests, built with the real `RunRecord` and `RunLog` (real columns)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

import pandas as pd

from claude_force_nb._records import AttemptSpan, RunLog, RunRecord

T0 = 1_750_000_000.0  # an arbitrary fixed wall-clock origin (Unix seconds)
UNPRICED_MODEL = "claude-local-dev"


def call(
    run_id: str,
    agent: str = "reviewer",
    *,
    model: str = "claude-sonnet-4-6",
    status: str = "succeeded",
    start: float = 0.0,
    latency: float = 1.0,
    cost: float = 0.001,
    saved: float = 0.0,
    spans: Sequence[tuple[float, float | None, str]] | None = None,
) -> RunRecord:
    """One finished call starting `start` s after T0; cache hits and never-started calls make no attempt."""
    cached = status == "cached"
    if spans is None:
        ran = status not in ("cached", "refused") and latency > 0
        spans = [(start, start + latency, "ok" if status == "succeeded" else "APICallError")] if ran else []
    record = RunRecord(
        run_id=run_id,
        agent=agent,
        model=model,
        status=status,  # type: ignore[arg-type]
        cached=cached,
        attempts=len(spans),
        cost_usd=0.0 if cached else cost,
        cost_saved_usd=saved,
        latency_s=latency,
        started_at=T0 + start,
        finished_at=math.nan if status in ("running", "retrying") else T0 + start + latency,
        spans=[AttemptSpan(T0 + s, None if e is None else T0 + e, outcome) for s, e, outcome in spans],
    )
    record.queued_at = T0 + start
    return record


def frame_of(records: Iterable[RunRecord]) -> pd.DataFrame:
    """The runs frame of `records`, exactly as the orchestrator's `RunLog` would produce it."""
    log = RunLog()
    log.extend(list(records))
    return log.to_frame()


def session(calls: int = 60, *, seed: int = 7, slots: int = 6) -> list[RunRecord]:
    """A realistic notebook session: four agents on three models (one unpriced), cache hits, retries, a
    failure, a budget refusal and a cancellation, scheduled through `slots` concurrent connections."""
    rng = random.Random(seed)
    agents = {
        "code-reviewer": ("claude-sonnet-4-6", 6.0, 0.012),
        "bug-investigator": ("claude-opus-4-7", 14.0, 0.055),
        "fixer": ("claude-haiku-4-5", 2.5, 0.0012),
        "summarizer": (UNPRICED_MODEL, 3.0, math.nan),
    }
    free = [0.0] * slots  # when each connection is next free
    records: list[RunRecord] = []
    queued = 0.0
    for index in range(calls):
        queued += rng.expovariate(1 / 0.9)
        agent = rng.choice(list(agents))
        model, mean, price = agents[agent]
        run_id = f"run-{index:04d}"
        if index > 3 and rng.random() < 0.28:
            saved = price * rng.uniform(0.6, 1.4)
            records.append(
                call(
                    run_id,
                    agent,
                    model=model,
                    status="cached",
                    start=queued,
                    latency=rng.uniform(0.001, 0.006),
                    saved=saved,
                )
            )
            continue
        if index == calls // 2:
            records.append(
                call(run_id, agent, model=model, status="refused", start=queued, latency=0.0, cost=0.0)
            )
            continue
        slot = min(range(slots), key=free.__getitem__)
        begin = max(queued, free[slot])
        spans: list[tuple[float, float | None, str]] = []
        failures = 2 if index == calls // 3 else (1 if rng.random() < 0.12 else 0)
        final_fail = index == calls // 3
        cursor = begin
        for attempt in range(failures + (0 if final_fail else 1)):
            length = rng.lognormvariate(math.log(mean), 0.45)
            failed = attempt < failures
            if failed:
                length = rng.uniform(0.3, 0.3 * mean)
            spans.append((cursor, cursor + length, "APICallError" if failed else "ok"))
            cursor += length + (0.5 * 2**attempt if failed else 0)
        if final_fail:
            spans.append((cursor, cursor + 1.2, "AttemptTimeoutError"))
        status = "failed" if final_fail else "succeeded"
        if index == calls - 3:
            spans[-1] = (spans[-1][0], spans[-1][0] + 2.0, "cancelled")
            status = "cancelled"
        end = spans[-1][1]
        assert end is not None
        free[slot] = end
        cost = price * rng.uniform(0.5, 1.6) if status == "succeeded" else 0.0
        records.append(
            call(
                run_id,
                agent,
                model=model,
                status=status,
                start=begin,
                latency=end - begin,
                cost=cost,
                spans=spans,
            )
        )
    return records
