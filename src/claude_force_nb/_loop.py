"""Running the orchestrator's coroutines from synchronous notebook code, on the kernel's own loop.

ipykernel runs each cell inside its running asyncio loop, so `asyncio.run()` fails there. Our choice (see
"One event loop" in docs/architecture.md): the orchestrator lives on the kernel's loop, so a blocking
`%%agent`, a background `--bg` run, the panel's Run button and a top-level `await orch.execute_agent(...)`
all share one loop and one connection pool.

- `run_blocking(coro)`: drive `coro` to completion from synchronous code. Inside a running loop it re-enters
  the loop with `nest_asyncio2`, applied lazily here at the first blocking run, never at import. Outside any
  loop (a script, a terminal) it uses one private loop, kept for the session so connections stay valid.
- A `KeyboardInterrupt` (the kernel's stop button) while blocked cancels the run's task and lets the
  cancellation finish, so in-flight calls are recorded as cancelled and finished ones are kept; then the
  interrupt is re-raised for the caller to report.
- `spawn(coro)`: schedule on the same loop and return the task at once (kept strongly referenced here until
  it ends, since the loop itself only keeps weak references).
- `finish_soon(coro)`: run a closing coroutine to its end without blocking a kernel: a spawned task when the
  loop is running, else at once (a script or terminal IPython, where nothing else would ever run the private
  loop: a spawned task would be destroyed pending at exit and the connections it was to close left open).
  At exit the private loop's unfinished tasks are cancelled and awaited, and the loop closed.
- `call_on(loop, fn)`: run `fn()` on `loop`, from whichever thread a callback arrives on. JupyterLab sends
  widget messages on a kernel subshell, which ipykernel 7 handles in its own thread with its own event loop:
  a button's callback run there would start calls on that loop, away from the orchestrator's connection
  pool (whose connections then fail, "attached to a different loop") and from the tasks it would cancel.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["call_on", "current_loop", "finish_soon", "run_blocking", "spawn"]

T = TypeVar("T")

_private_loop: asyncio.AbstractEventLoop | None = None
# The loops patched so far, held weakly: keyed by the loop itself, never by `id(loop)`, which a new loop can
# reuse once an old one is gone (and would then be wrongly taken as patched).
_patched: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_tasks: set[asyncio.Task[Any]] = set()
_lock = threading.Lock()


def current_loop() -> asyncio.AbstractEventLoop:
    """The loop notebook work runs on: the running (kernel) loop, or the session's private loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    global _private_loop
    with _lock:
        if _private_loop is None or _private_loop.is_closed():
            _private_loop = asyncio.new_event_loop()
        return _private_loop


def _allow_reentry(loop: asyncio.AbstractEventLoop) -> None:
    """Patch `loop` with nest_asyncio2 so run_until_complete works while it is already running (once)."""
    if loop in _patched:
        return
    import nest_asyncio2

    nest_asyncio2.apply(loop)
    _patched.add(loop)


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on the notebook's loop and return its result (see module docstring)."""
    loop = current_loop()
    if loop.is_running():
        _allow_reentry(loop)
    task = loop.create_task(coro)
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        raise


def spawn(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Schedule `coro` on the notebook's loop and return its task without waiting.

    In a kernel the task advances whenever the kernel is idle (or awaiting); outside a running loop it
    advances during later `run_blocking` calls.
    """
    task = current_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


def finish_soon(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run `coro` to its end on the notebook's loop: spawned (and returned) when that loop is running, else
    run now (see the module docstring)."""
    loop = current_loop()
    if loop.is_running():
        return spawn(coro)
    run_blocking(coro)
    return None


@atexit.register
def _close_private_loop() -> None:
    """At exit: cancel and await what is still pending on the private loop, then close it (else each pending
    task is "destroyed but pending" and the loop "unclosed")."""
    loop = _private_loop
    if loop is None or loop.is_closed() or loop.is_running():
        return
    pending = [t for t in _tasks if not t.done() and t.get_loop() is loop]
    for task in pending:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def call_on(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
    """Run `fn()` on `loop`: at once if this thread runs `loop` (or nothing runs it), else handed to the
    thread running it (`call_soon_threadsafe`), as for a widget callback arriving on a kernel subshell."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        fn()
    else:
        loop.call_soon_threadsafe(fn)


def pending_tasks() -> int:
    """How many spawned tasks have not finished (a diagnostic: the kernel tests check none is left)."""
    return sum(not t.done() for t in _tasks)
