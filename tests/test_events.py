"""Progress events (`_events`): fan-out to subscribers, isolation from broken ones, `EventBus.stream()`."""

from __future__ import annotations

import asyncio
import logging

import pytest

from claude_force_nb import EventBus, RunEvent, define_agent
from claude_force_nb._events import EVENT_KINDS
from claude_force_nb._records import RunRecord
from claude_force_nb.sim import Fault, Simulator

from .conftest import make_orchestrator


def record(name: str = "a") -> RunRecord:
    return RunRecord(run_id=f"r-{name}", agent=name, model="m")


def test_subscribers_get_every_event_in_order_until_they_unsubscribe() -> None:
    """Each subscriber sees each event once, in emission order, with its fields; unsubscribing (twice is
    harmless) stops delivery, and with nobody listening the bus reports itself inactive."""
    bus = EventBus()
    assert not bus.active
    seen: list[RunEvent] = []
    unsubscribe = bus.subscribe(seen.append, kinds=EVENT_KINDS)
    assert bus.active
    live = record()
    bus.emit("queued", live)
    bus.emit("text", live, text="hel")
    problem = RuntimeError("overloaded")
    bus.emit("retrying", live, delay_s=0.5, error=problem)
    assert [(e.kind, e.text, e.delay_s, e.error) for e in seen] == [
        ("queued", None, None, None),
        ("text", "hel", None, None),
        ("retrying", None, 0.5, problem),
    ]
    assert all(e.record is live for e in seen)
    assert seen[0].time <= seen[1].time <= seen[2].time
    unsubscribe()
    unsubscribe()
    bus.emit("finished", live)
    assert len(seen) == 3 and not bus.active


def test_a_broken_subscriber_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber that raises never stops the emit nor the subscribers after it."""
    bus = EventBus()

    def broken(event: RunEvent) -> None:
        raise ValueError("display bug")

    after: list[str] = []
    bus.subscribe(broken)
    bus.subscribe(lambda event: after.append(event.kind))
    with caplog.at_level(logging.ERROR, logger="claude_force_nb"):
        bus.emit("queued", record())
        bus.emit("finished", record())
    assert after == ["queued", "finished"]
    assert caplog.text.count("failed on a") == 2 and "display bug" in caplog.text


def test_a_subscriber_may_unsubscribe_while_an_event_is_delivered() -> None:
    """Unsubscribing from inside a callback does not skip the other subscribers of that event."""
    bus = EventBus()
    seen: list[str] = []
    unsubscribe = bus.subscribe(lambda event: unsubscribe())
    bus.subscribe(lambda event: seen.append(event.kind))
    bus.emit("queued", record())
    bus.emit("started", record())
    assert seen == ["queued", "started"]


async def test_stream_yields_events_in_order_and_unsubscribes_on_exit() -> None:
    """`async with bus.stream() as events` gives the events as an async iterator; leaving the block
    unsubscribes it, so nothing is queued for a reader that is gone."""
    bus = EventBus()
    async with bus.stream() as events:
        assert bus.active
        bus.emit("queued", record("x"))
        bus.emit("started", record("x"))
        bus.emit("finished", record("x"))
        kinds = [(await anext(events)).kind for _ in range(3)]
    assert kinds == ["queued", "started", "finished"]
    assert not bus.active


async def test_a_bounded_stream_drops_what_does_not_fit_and_never_blocks_the_emitter() -> None:
    """With `maxsize`, events that arrive while the queue is full are dropped (emit never waits for a slow
    reader); later events are delivered once there is room again."""
    bus = EventBus()
    async with bus.stream(maxsize=2) as events:
        for kind in ("queued", "started", "finished"):  # the third finds the queue full
            bus.emit(kind, record())  # type: ignore[arg-type]
        first, second = await anext(events), await anext(events)
        bus.emit("cached", record())
        third = await anext(events)
    assert [first.kind, second.kind, third.kind] == ["queued", "started", "cached"]


async def test_a_streamed_call_emits_its_lifecycle(sim: Simulator) -> None:
    """Through the orchestrator, a streamed call that is retried once emits queued, started, retrying,
    started again, its text deltas and finished, in that order, all about the same record."""
    define_agent("a", "x")
    sim.script(Fault("overloaded"), times=1)
    async with make_orchestrator(sim) as orch, orch.events.stream(kinds=EVENT_KINDS) as events:
        deltas: list[str] = []
        result = await orch.execute_agent("a", "t", on_text=deltas.append)
        seen: list[RunEvent] = []
        while not seen or seen[-1].kind != "finished":
            seen.append(await asyncio.wait_for(anext(events), timeout=30))
    kinds = [e.kind for e in seen]
    assert kinds[:4] == ["queued", "started", "retrying", "started"]
    assert set(kinds[4:-1]) == {"text"} and kinds[-1] == "finished"
    assert "".join(e.text or "" for e in seen if e.kind == "text") == result.output == "".join(deltas)
    assert {e.record.run_id for e in seen} == {result.run_id}
    assert not orch.events.active


def test_text_events_go_only_to_subscribers_that_ask_for_them() -> None:
    """By default a subscriber gets every kind but "text"; `wants` says whether anyone reads text (which is
    what makes the orchestrator stream), and stops saying so once that subscriber leaves."""
    bus = EventBus()
    progress: list[str] = []
    texts: list[str] = []
    bus.subscribe(lambda event: progress.append(event.kind))
    assert bus.active and not bus.wants("text") and bus.wants("finished")
    stop = bus.subscribe(lambda event: texts.append(event.text or ""), kinds=("text",))
    assert bus.wants("text")
    bus.emit("started", record())
    bus.emit("text", record(), text="hi")
    bus.emit("finished", record())
    stop()
    bus.emit("text", record(), text="unheard")
    assert progress == ["started", "finished"] and texts == ["hi"] and not bus.wants("text")
    with pytest.raises(ValueError, match="unknown event kind"):
        bus.subscribe(print, kinds=("txet",))  # type: ignore[arg-type]


def test_a_filtered_text_subscription_wants_only_the_calls_it_accepts() -> None:
    """`where` decides, per record, both who hears an event and whether the bus wants that call's text
    (what makes the orchestrator stream it); an unfiltered "text" subscriber wants every call's."""
    bus = EventBus()
    chosen, other = record("chosen"), record("other")
    heard: list[str] = []
    unsubscribe = bus.subscribe(
        lambda e: heard.append(e.record.agent), kinds=("text",), where=lambda r: r.agent == "chosen"
    )
    assert bus.wants("text", chosen) and not bus.wants("text", other)
    assert not bus.wants("started", chosen)
    bus.emit("text", chosen, text="a")
    bus.emit("text", other, text="b")
    assert heard == ["chosen"]
    everyone = bus.subscribe(lambda e: None, kinds=("text",))
    assert bus.wants("text", other)
    everyone()
    unsubscribe()
    assert not bus.wants("text", chosen) and not bus.active


async def test_only_the_call_a_filtered_subscriber_reads_is_streamed(sim: Simulator) -> None:
    """Three calls, a text subscription for one of them: one streamed request reaches the API, and that
    call's text events (alone) arrive."""
    for name in ("a", "b", "c"):
        define_agent(name, "You help.")
    orch = make_orchestrator(sim)
    texts: list[str] = []
    unsubscribe = orch.events.subscribe(
        lambda e: texts.append(e.record.agent), kinds=("text",), where=lambda r: r.agent == "b"
    )
    results = await orch.execute_multiple([("a", "x"), ("b", "y"), ("c", "z")])
    unsubscribe()
    await orch.aclose()
    assert all(r.success for r in results)
    assert sim.stats()["streamed"] == 1
    assert texts and set(texts) == {"b"}
