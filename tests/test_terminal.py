"""Terminal IPython, driven through a real pseudo-terminal: streamed text is printed as it arrives, and
nothing else (no `<IPython.core.display.Markdown object>` lines for live views a terminal cannot show)."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


class Terminal:
    """`ipython` on a pseudo-terminal; `run(line)` types a line and returns what appeared, read by read."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner", "--colors=NoColor"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.reads: list[bytes] = []
        self.until(b"In [1]: ")

    def until(self, marker: bytes, timeout: float = 120) -> list[bytes]:
        """Reads until `marker` has appeared; returns the reads (each as the terminal received it)."""
        reads: list[bytes] = []
        deadline = time.monotonic() + timeout
        while marker not in b"".join(reads):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} in {b''.join(reads)[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], 1)
            if ready:
                try:
                    reads.append(os.read(self.master, 65536))
                except OSError:  # the process ended
                    break
        self.reads += reads
        return reads

    def run(self, line: str, prompt: int) -> list[bytes]:
        os.write(self.master, line.encode() + b"\r")
        return self.until(f"In [{prompt}]: ".encode())

    def close(self) -> None:
        if self.process.poll() is None:
            os.write(self.master, b"exit\r")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        os.close(self.master)


def test_terminal_ipython_prints_streamed_text_and_nothing_else(tmp_path: Path) -> None:
    """A streamed call prints its answer in pieces as they arrive, then one summary line; a fan-out prints
    its summary and answers as text. No display-object placeholder anywhere."""
    shutil.copytree(ROOT / "notebooks" / ".claude", tmp_path / ".claude")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_FORCE_NB"))}
    env.update(HOME=str(tmp_path), TERM="dumb", PYTHONUNBUFFERED="1", MPLBACKEND="agg")
    terminal = Terminal(tmp_path, env)
    try:
        terminal.run("%load_ext claude_force_nb", 2)
        streamed = terminal.run(
            "get_ipython().run_cell_magic('agent', 'code-reviewer', 'Review: def mean(xs): return sum(xs)')",
            3,
        )
        fan_out = terminal.run(
            "get_ipython().run_cell_magic('agent', 'code-reviewer,summarizer', 'Summarise: x = 1')", 4
        )
    finally:
        terminal.close()
    everything = b"".join(terminal.reads).decode(errors="replace")
    assert "IPython.core.display" not in everything and "object>" not in everything, everything
    text = b"".join(streamed).decode(errors="replace")
    assert text.count("[simulated") == 1, text  # the answer once, not again at the end
    assert "1 call · $" in text
    summary_at = next(i for i, piece in enumerate(streamed) if b"1 call \xc2\xb7" in piece)
    answer_reads = [piece for piece in streamed[:summary_at] if piece.strip()]
    assert len(answer_reads) >= 2, streamed  # the answer came in pieces before the end, not all at once
    fan_text = b"".join(fan_out).decode(errors="replace")
    assert "2 calls · $" in fan_text and fan_text.count("[simulated") == 2, fan_text
