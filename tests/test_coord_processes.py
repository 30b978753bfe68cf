"""Real processes sharing one budget and one rate limit through a real redis-server, refereed by the
simulator.

Each worker (tests/coord_worker.py) is its own Python process with its own orchestrator; the simulator runs
in this process and counts what it served and refused.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from claude_force_nb._coord import Coordination
from claude_force_nb.sim import serve

from .test_coord import referee_spend

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKER = Path(__file__).with_name("coord_worker.py")


def start_worker(**options: Any) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "started"
    return worker


def finish(worker: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = worker.communicate(timeout=180)
    assert worker.returncode == 0, err
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


async def ledger(url: str, scope: str) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    probe = Coordination(url, scope=scope, owner="referee")
    try:
        return await probe.report()
    finally:
        await probe.aclose()


def test_four_processes_never_exceed_a_shared_budget_even_when_one_is_killed(redis_url: str) -> None:
    """4 processes x concurrency 20 share $0.25 (each would spend far more alone); one is SIGKILLed mid-run.
    The simulator's count of what it served (plus the worst case of what it never answered) stays within the
    budget, and the dead process's holds are settled, as spent, within the lease time."""
    scope, budget, lease_s = f"p-{uuid.uuid4().hex[:10]}", 0.25, 2.0
    with serve(ttft_s=0.05, per_token_s=0.0005, record_limit=20_000) as sim:
        common = {
            "redis": redis_url,
            "scope": scope,
            "base_url": sim.base_url,
            "budget_usd": budget,
            "concurrency": 20,
            "calls": 120,
            "lease_s": lease_s,
            "heartbeat_s": 0.3,
        }
        workers = [start_worker(owner=f"w{i}", **common) for i in range(4)]
        deadline = time.monotonic() + 60
        while sim.stats()["requests"] < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].communicate(timeout=30)  # reaps it and closes its pipes
        summaries = [finish(w) for w in workers[1:]]
        time.sleep(lease_s + 0.5)  # the dead process's leases lapse
        spent = referee_spend(sim)
        fields, owners = asyncio.run(ledger(redis_url, scope))
    assert spent <= budget + 1e-9
    assert float(fields["spent"]) <= budget + 1e-9
    assert float(fields["held"]) == pytest.approx(0.0, abs=1e-9)  # nothing held forever
    assert owners["w0"]["held"] == pytest.approx(0.0, abs=1e-9)
    assert spent >= 0.5 * budget  # the budget was used, not locked up by worst cases
    assert all(s["statuses"].get("refused", 0) > 0 for s in summaries)  # the shared budget bound them all
    survivors = sum(s["spent"] for s in summaries)
    assert survivors == pytest.approx(sum(owners.get(s["owner"], {}).get("spent", 0.0) for s in summaries))


def test_four_processes_share_a_request_and_input_token_limit(redis_url: str) -> None:
    """4 processes pacing to the simulator's RPM and ITPM on one scope: fewer than 1% of the requests meet a
    429 (each alone would pace to the whole limit, and together they would run into it four times over)."""
    scope, rpm, itpm = f"r-{uuid.uuid4().hex[:10]}", 1800, 120_000
    with serve(requests_per_minute=rpm, input_tokens_per_minute=itpm, ttft_s=0.01) as sim:
        common = {
            "redis": redis_url,
            "scope": scope,
            "base_url": sim.base_url,
            "concurrency": 20,
            "calls": 40,
            "prompt_chars": 600,
            "rpm": rpm,
            "itpm": itpm,
        }
        workers = [start_worker(owner=f"w{i}", **common) for i in range(4)]
        summaries = [finish(w) for w in workers]
        stats = sim.stats()
    assert all(s["statuses"] == {"succeeded": 40} for s in summaries)
    assert stats["by_status"].get(429, 0) < 0.01 * stats["requests"]
    assert stats["by_status"][200] == 160
