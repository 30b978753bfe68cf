"""Progress events: how a UI follows calls without polling.

The orchestrator emits a `RunEvent` at each step of a call (queued, started, retrying, text, finished,
failed, cached, refused, cancelled). Subscribers are plain callables run on the event loop's thread, in
order; one that raises is logged and skipped, never allowed to break a run. `EventBus.stream()` gives the
same events as an async iterator for code that prefers `async for`.

Subscribers say which kinds they want (`kinds=`), and "text" is opt-in: a call is streamed only when
someone reads its text (an `on_text` callback, or a subscriber that asked for "text" events), because
streaming costs the kernel far more CPU per call than one JSON answer. A progress view that only counts
calls therefore never turns the calls it shows into streamed calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from ._records import RunRecord

__all__ = ["DEFAULT_EVENT_KINDS", "EVENT_KINDS", "EventBus", "EventKind", "RunEvent"]

log = logging.getLogger("claude_force_nb")

EventKind = Literal[
    "queued", "started", "retrying", "text", "finished", "failed", "cached", "refused", "cancelled"
]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
"""Every event kind, for a subscriber that wants them all (`subscribe(callback, kinds=EVENT_KINDS)`)."""
_ALL_KINDS: frozenset[str] = frozenset(EVENT_KINDS)
DEFAULT_EVENT_KINDS: frozenset[str] = _ALL_KINDS - {"text"}
"""What a subscriber gets unless it asks otherwise: every step of a call, but not its streamed text."""


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
RecordFilter = Callable[[RunRecord], bool]


class EventBus:
    """Fan-out of run events to subscribers, each receiving only the kinds it asked for."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, frozenset[str], RecordFilter | None]] = []
        self._wanted: dict[str, int] = {}  # kind -> how many subscribers want it (filtered or not)
        self._everywhere: dict[str, int] = {}  # kind -> how many want it for every call

    @property
    def active(self) -> bool:
        """Whether anyone listens at all."""
        return bool(self._subscribers)

    def wants(self, kind: EventKind, record: RunRecord | None = None) -> bool:
        """Whether any subscriber asked for `kind` (for `record`, when given: a subscriber's `where` is
        asked). The orchestrator streams a call's attempt only if someone wants its "text"."""
        if self._everywhere.get(kind, 0) > 0:
            return True
        if not self._wanted.get(kind, 0):
            return False
        return any(
            kind in wanted and where is not None and (record is None or where(record))
            for _, wanted, where in self._subscribers
        )

    def subscribe(
        self,
        callback: Subscriber,
        *,
        kinds: Iterable[EventKind] | None = None,
        where: RecordFilter | None = None,
    ) -> Callable[[], None]:
        """Call `callback(event)` for every event of `kinds` from now on; returns the unsubscribe function.

        `kinds` defaults to `DEFAULT_EVENT_KINDS` (everything but "text"). Asking for "text" makes every
        call stream its answer while this subscriber is subscribed; with `where`, only the calls whose
        record it accepts (asked as each attempt starts, so a call chosen while queued streams, one already
        answering does not), and only their events reach `callback`. The panel streams the selected call
        this way and no other.
        """
        wanted = DEFAULT_EVENT_KINDS if kinds is None else frozenset(kinds)
        unknown = wanted - _ALL_KINDS
        if unknown:
            raise ValueError(f"unknown event kind(s): {', '.join(sorted(unknown))}")
        entry = (callback, wanted, where)
        self._subscribers.append(entry)
        for kind in wanted:
            self._wanted[kind] = self._wanted.get(kind, 0) + 1
            if where is None:
                self._everywhere[kind] = self._everywhere.get(kind, 0) + 1

        def unsubscribe() -> None:
            try:
                self._subscribers.remove(entry)
            except ValueError:
                return  # already unsubscribed
            for kind in wanted:
                self._wanted[kind] -= 1
                if where is None:
                    self._everywhere[kind] -= 1

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
        if not self._wanted.get(kind):
            return
        event = RunEvent(kind, record, time.time(), text=text, delay_s=delay_s, error=error)
        for callback, wanted, where in tuple(self._subscribers):
            if kind not in wanted or (where is not None and not where(record)):
                continue
            try:
                callback(event)
            except Exception:  # a broken progress display must never fail the calls it displays
                log.exception("run-event subscriber %r failed on a %s event", callback, kind)

    @contextlib.asynccontextmanager
    async def stream(
        self, maxsize: int = 0, *, kinds: Iterable[EventKind] | None = None
    ) -> AsyncIterator[AsyncIterator[RunEvent]]:
        """`async with bus.stream() as events: async for event in events: ...` (unsubscribes on exit).

        `kinds` as for `subscribe`."""
        queue: asyncio.Queue[RunEvent] = asyncio.Queue(maxsize)

        def put(event: RunEvent) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

        unsubscribe = self.subscribe(put, kinds=kinds)

        async def iterate() -> AsyncIterator[RunEvent]:
            while True:
                yield await queue.get()

        try:
            yield iterate()
        finally:
            unsubscribe()
