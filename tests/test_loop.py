"""Running coroutines from synchronous notebook code: re-entering a running loop."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_new_loop_that_reuses_a_dead_loops_id_is_still_patched() -> None:
    """Patched loops are remembered by the loop, not its `id()`: a new loop whose id a dead loop had (forced
    here by making `id` constant inside the module) is still patched, so a blocking run inside it works.

    In a fresh interpreter, so no earlier test has patched a shared loop class already."""
    script = textwrap.dedent(
        """
        import asyncio, gc
        from claude_force_nb import _loop

        _loop.id = lambda obj: 1  # every object "reuses" the same id, as a new loop can after a dead one

        class FirstLoop(asyncio.SelectorEventLoop):
            pass

        class SecondLoop(asyncio.SelectorEventLoop):  # a sibling: patching FirstLoop does not patch it
            pass

        async def blocking_inside() -> int:
            return _loop.run_blocking(asyncio.sleep(0, result=42))

        first = FirstLoop()
        print(first.run_until_complete(blocking_inside()))
        first.close()
        del first
        gc.collect()
        second = SecondLoop()
        print(second.run_until_complete(blocking_inside()))
        second.close()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["42", "42"]
