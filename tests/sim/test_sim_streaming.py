"""SSE streaming: the real event sequence, and the same text and usage as the JSON path."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import anthropic
from sim_support import API_KEY, MODEL, body, user

from claude_force_nb.sim import Simulator, serve


async def _raw_events(
    http: aiohttp.ClientSession, url: str, payload: dict[str, Any]
) -> list[tuple[str, Any]]:
    """POST a streaming request and split the SSE body into (event, decoded data) pairs."""
    async with http.post(f"{url}/v1/messages", json=payload, headers={"x-api-key": API_KEY}) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["request-id"].startswith("req_")
        raw = (await resp.read()).decode()
    events = []
    for frame in raw.split("\n\n"):
        if not frame:
            continue
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ")
        assert data_line.startswith("data: ")
        events.append((event_line[7:], json.loads(data_line[6:])))
    return events


async def test_stream_sends_the_real_event_sequence(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """message_start, content_block_start, ping, deltas, content_block_stop, message_delta, message_stop."""
    events = await _raw_events(http, sim.base_url, body("stream please", max_tokens=2000, stream=True))
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = names[3:-3]
    assert len(deltas) > 3
    assert set(deltas) == {"content_block_delta"}
    assert all(data["type"] == name for name, data in events)

    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"} <= set(start["usage"])
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    pieces = [data["delta"]["text"] for _, data in events[3:-3]]
    assert all(data["delta"]["type"] == "text_delta" and data["index"] == 0 for _, data in events[3:-3])
    assert all(len(piece) <= 12 for piece in pieces)  # a few tokens (3 x 4 characters) per chunk
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == (sum(len(p) for p in pieces) + 3) // 4
    assert final["usage"]["input_tokens"] == start["usage"]["input_tokens"]


async def test_raw_sdk_stream_matches_the_json_answer(client: anthropic.AsyncAnthropic) -> None:
    """Iterating `create(stream=True)` yields the text and usage the JSON path gives the same request."""
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2000,
        "messages": user("same answer"),
        "system": "s",
    }
    message = await client.messages.create(**kwargs)
    text, usage, stop_reason = "", None, None
    stream = await client.messages.create(**kwargs, stream=True)
    async for event in stream:
        if event.type == "message_start":
            assert event.message.usage.input_tokens == message.usage.input_tokens
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
        elif event.type == "message_delta":
            usage, stop_reason = event.usage, event.delta.stop_reason
    assert text == message.content[0].text  # type: ignore[union-attr]
    assert stop_reason == message.stop_reason
    assert usage is not None
    assert usage.output_tokens == message.usage.output_tokens
    assert usage.input_tokens == message.usage.input_tokens


async def test_stream_helper_final_message_equals_the_json_answer(client: anthropic.AsyncAnthropic) -> None:
    """`messages.stream(...).get_final_message()` rebuilds exactly the JSON Message (ids aside)."""
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 25,
        "messages": user("helper"),
        "stop_sequences": ["zz"],
    }
    message = await client.messages.create(**kwargs)
    async with client.messages.stream(**kwargs) as stream:
        final = await stream.get_final_message()
        streamed_text = await stream.get_final_text()
    assert final.content[0].text == message.content[0].text == streamed_text  # type: ignore[union-attr]
    assert final.usage == message.usage
    assert (final.stop_reason, final.stop_sequence) == (message.stop_reason, message.stop_sequence)
    assert final.stop_reason == "max_tokens"


async def test_stream_stop_sequence_is_reported_in_message_delta(client: anthropic.AsyncAnthropic) -> None:
    """A stop sequence cuts the streamed text too, and message_delta names it."""
    full = await client.messages.create(model=MODEL, max_tokens=4000, messages=user("stop stream"))
    stop = full.content[0].text.split("\n")[2].split()[1]  # type: ignore[union-attr]
    async with client.messages.stream(
        model=MODEL, max_tokens=4000, messages=user("stop stream"), stop_sequences=[stop]
    ) as stream:
        final = await stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", stop)
    assert stop not in final.content[0].text  # type: ignore[union-attr]


async def test_stream_is_paced_by_ttft_and_per_token(make_client: Any) -> None:
    """The first delta waits ttft_s; the stream as a whole takes about ttft_s + per_token_s * tokens."""
    with serve(ttft_s=0.05, per_token_s=0.001, min_output_tokens=30, max_output_tokens=30) as sim:
        client = make_client(sim)
        start = time.perf_counter()
        first_delta = None
        async with client.messages.stream(model=MODEL, max_tokens=1000, messages=user("pace")) as stream:
            async for event in stream:
                if event.type == "content_block_delta" and first_delta is None:
                    first_delta = time.perf_counter() - start
            final = await stream.get_final_message()
        total = time.perf_counter() - start
    assert first_delta is not None
    assert first_delta >= 0.05
    expected = 0.05 + 0.001 * final.usage.output_tokens
    assert expected <= total < expected + 5.0  # the upper bound only catches a runaway delay


async def test_streams_are_counted_in_stats(sim: Simulator, client: anthropic.AsyncAnthropic) -> None:
    """Streamed requests count as requests and as streamed, with their usage."""
    async with client.messages.stream(model=MODEL, max_tokens=8, messages=user("count me")) as stream:
        final = await stream.get_final_message()
    stats = sim.stats()
    assert (stats["requests"], stats["streamed"], stats["by_status"]) == (1, 1, {200: 1})
    assert stats["output_tokens"] == final.usage.output_tokens == 8
