"""The backend seam: one method that turns a `MessageRequest` into a `Completion`.

The orchestrator owns scheduling, retries, timeouts and accounting; a backend only makes one attempt and
reports how it went, raising an exception from `claude_force_nb._exceptions.BackendError`'s tree on
failure. `AnthropicBackend` is the real one (the `anthropic` SDK, against the API or the local simulator).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .._request import Completion, MessageRequest

__all__ = ["Backend", "TextCallback", "being_cancelled"]

TextCallback = Callable[[str], None]


@runtime_checkable
class Backend(Protocol):
    """Anything that can make one attempt at a Messages API call."""

    async def complete(self, request: MessageRequest, *, on_text: TextCallback | None = None) -> Completion:
        """One attempt. With `on_text`, stream and call it with each text delta as it arrives."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def being_cancelled() -> bool:
    """Whether the running task has been asked to cancel, even if the CancelledError never reached it.

    Some transports absorb a cancellation that lands in a read (aiohttp's close paths swallow a
    CancelledError; always on Python 3.10): the stream then ends early, or fails as a lost connection,
    instead of raising. That is the call's own cancellation, not a connection failure to count as failed
    or to retry. `Task.cancelling()` (Python 3.11+) still counts the request. Python 3.10 has no such count,
    so this is False there; the orchestrator runs each attempt in its own task on 3.10 (`asyncio.wait_for`),
    whose cancellation ends as CancelledError whatever the attempt's own task reported.
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False
