"""Progress events: how a UI follows calls without polling.

The orchestrator emits a `RunEvent` at each step of a call (queued, started, retrying, text, finished,
failed, cached, refused, cancelled). Subscribers are plain callables run on the event loop's thread, in
order; one that raises is logged and skipped, never allowed to break a run. `EventBus.stream()` gives the
same events as an async iterator for code that prefers `async for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from ._records import RunRecord

__all__ = ["EventBus", "EventKind", "RunEvent"]

log = logging.getLogger("claude_force_nb")

EventKind = Literal[
    "queued", "started", "retrying", "text", "finished", "failed", "cached", "refused", "cancelled"
]


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One step of one call. `record` is the live record (read it, don't write it).

    `text` is set for "text" events (a streamed delta); `delay_s` for "retrying" (the wait before the next
    attempt); `error` for "retrying", "failed" and "refused".
    """

    kind: EventKind
    record: RunRecord
    time: float
    text: str | None = None
    delay_s: float | None = None
    error: BaseException | None = None


Subscriber = Callable[[RunEvent], None]


class EventBus:
    """Fan-out of run events to subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    @property
    def active(self) -> bool:
        """Whether anyone listens: the orchestrator skips building events when nobody does."""
        return bool(self._subscribers)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def emit(
        self,
        kind: EventKind,
        record: RunRecord,
        *,
        text: str | None = None,
        delay_s: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        if not self._subscribers:
            return
        event = RunEvent(kind, record, time.time(), text=text, delay_s=delay_s, error=error)
        for callback in tuple(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken progress display must never fail the calls it displays
                log.exception("run-event subscriber %r failed on a %s event", callback, kind)

    @contextlib.asynccontextmanager
    async def stream(self, maxsize: int = 0) -> AsyncIterator[AsyncIterator[RunEvent]]:
        """`async with bus.stream() as events: async for event in events: ...` (unsubscribes on exit)."""
        queue: asyncio.Queue[RunEvent] = asyncio.Queue(maxsize)

        def put(event: RunEvent) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

        unsubscribe = self.subscribe(put)

        async def iterate() -> AsyncIterator[RunEvent]:
            while True:
                yield await queue.get()

        try:
            yield iterate()
        finally:
            unsubscribe()
