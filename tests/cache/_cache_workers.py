"""Code run in spawned child processes by test_multiprocess.py (module-level so spawn can import it)."""

from __future__ import annotations

import random
from pathlib import Path

from _cache_support import make_completion, make_request

from claude_force_nb._cache import ResponseCache


def hammer(cache_dir: str, seed: int, rounds: int, result: object) -> None:
    """Mixed puts and gets over a small key space with a cap small enough to force evictions."""
    rng = random.Random(seed)
    with ResponseCache(
        "disk", cache_dir=Path(cache_dir), secret="shared", max_size_mb=0.03, memory_max_size_mb=0
    ) as cache:
        for _ in range(rounds):
            task = f"task {rng.randrange(40)}"
            if rng.random() < 0.5:
                text = f"{task} " + "w" * rng.randrange(100, 2000)
                cache.put(make_request(task), make_completion(text), agent="a", cost_usd=0.01, latency_s=0.1)
            else:
                hit = cache.get(make_request(task), agent="a")
                if hit is not None and not hit.completion.text.startswith(f"{task} "):
                    raise AssertionError(f"served the wrong answer for {task}")
        result.put(cache.stats().integrity_failures)  # type: ignore[attr-defined]


def write_forever(cache_dir: str, ready: object) -> None:
    """Write large entries in a loop until killed."""
    with ResponseCache("disk", cache_dir=Path(cache_dir), secret="shared", max_size_mb=0.5) as cache:
        i = 0
        while True:
            task = f"k{i % 60}"
            cache.put(
                make_request(task),
                make_completion(f"{task} " + "z" * 20_000),
                agent="a",
                cost_usd=0.0,
                latency_s=0,
            )
            if i == 5:
                ready.set()  # type: ignore[attr-defined]
            i += 1
