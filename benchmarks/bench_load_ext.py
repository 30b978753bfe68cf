"""How long `%load_ext claude_force_nb` takes, beside a bare `import pandas`, in fresh processes.

Each figure is the median of several fresh interpreters (a warm disk cache, cold imports), measured inside
the process so interpreter start-up is not counted. Target: load_ext <= 0.3 s on this machine.

Run: `python benchmarks/bench_load_ext.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PROBES = {
    "baseline: import pandas": (
        "import time; t = time.perf_counter(); import pandas; print(time.perf_counter() - t)"
    ),
    "import claude_force_nb": (
        "import time; t = time.perf_counter(); import claude_force_nb; print(time.perf_counter() - t)"
    ),
    "%load_ext claude_force_nb (in a started IPython)": (
        "import time\n"
        "from IPython.testing.globalipapp import start_ipython\n"
        "ip = start_ipython()\n"
        "t = time.perf_counter()\n"
        "ip.run_line_magic('load_ext', 'claude_force_nb')\n"
        "print(time.perf_counter() - t)\n"
    ),
    "for reference: import anthropic (loaded at the first call)": (
        "import time; t = time.perf_counter(); import anthropic; print(time.perf_counter() - t)"
    ),
}


def measure(code: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        samples.append(float(out.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = {name: measure(code, args.runs) for name, code in PROBES.items()}
    baseline = results["baseline: import pandas"]
    print(f"\n%load_ext cost, median of {args.runs} fresh processes")
    print(f"{'what':<60} {'seconds':>8} {'vs import pandas':>17}")
    print("-" * 88)
    for name, seconds in results.items():
        print(f"{name:<60} {seconds:8.3f} {seconds / baseline:16.2f}x")
    load = results["%load_ext claude_force_nb (in a started IPython)"]
    print(f"target: load_ext <= 0.3 s -> {'met' if load <= 0.3 else 'NOT met'} ({load:.3f} s)")


if __name__ == "__main__":
    main()
