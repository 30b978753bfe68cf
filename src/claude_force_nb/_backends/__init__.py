"""The backend seam: one method that turns a `MessageRequest` into a `Completion`.

The orchestrator owns scheduling, retries, timeouts and accounting; a backend only makes one attempt and
reports how it went, raising an exception from `claude_force_nb._exceptions.BackendError`'s tree on
failure. `AnthropicBackend` is the real one (the `anthropic` SDK, against the API or the local simulator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .._request import Completion, MessageRequest

__all__ = ["Backend", "TextCallback"]

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
