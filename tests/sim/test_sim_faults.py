"""Injected faults as the SDK sees them: status classes, headers, dropped or hung connections, bad bodies."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import anthropic
import pytest
from sim_support import API_KEY, MODEL, body, user

from claude_force_nb.sim import Fault, Simulator, serve


async def test_rate_limit_fault_is_a_429_with_retry_after_headers(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """Fault("rate_limit") gives RateLimitError with retry-after (integer, ceil) and exact retry-after-ms."""
    sim.script(Fault("rate_limit", retry_after=0.05))
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    headers = info.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("1", "50")
    assert info.value.type == "rate_limit_error"
    assert info.value.request_id is not None
    assert "x-should-retry" not in headers


async def test_rate_limit_fault_defaults_to_one_second(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """Without retry_after, a rate_limit fault asks for one second."""
    sim.script(Fault("rate_limit"))
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert (info.value.response.headers["retry-after"], info.value.response.headers["retry-after-ms"]) == (
        "1",
        "1000",
    )


async def test_retry_after_ms_can_be_turned_off(make_client: Any) -> None:
    """retry_after_ms=False sends only the integer retry-after header."""
    with serve(retry_after_ms=False) as sim:
        sim.script(Fault("rate_limit", retry_after=2.5))
        with pytest.raises(anthropic.RateLimitError) as info:
            await make_client(sim).messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert info.value.response.headers["retry-after"] == "3"
    assert "retry-after-ms" not in info.value.response.headers


async def test_overloaded_fault_is_a_529_internal_server_error(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """Fault("overloaded") is status 529 with error type overloaded_error (an InternalServerError)."""
    sim.script(Fault("overloaded", retry_after=0.25, should_retry=True))
    with pytest.raises(anthropic.InternalServerError) as info:
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert info.value.status_code == 529
    assert info.value.type == "overloaded_error"
    headers = info.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"], headers["x-should-retry"]) == (
        "1",
        "250",
        "true",
    )


async def test_server_error_fault_is_a_500_api_error(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """Fault("server_error") is a 500 api_error; should_retry=False says so in x-should-retry."""
    sim.script(Fault("server_error", should_retry=False, message="boom"))
    with pytest.raises(anthropic.InternalServerError) as info:
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert (info.value.status_code, info.value.type, info.value.api_message) == (500, "api_error", "boom")
    assert info.value.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in info.value.response.headers


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (408, anthropic.APIStatusError, "timeout_error"),
        (409, anthropic.ConflictError, "conflict_error"),
        (413, anthropic.APIStatusError, "request_too_large"),
        (422, anthropic.UnprocessableEntityError, "invalid_request_error"),
        (503, anthropic.InternalServerError, "api_error"),
        (504, anthropic.InternalServerError, "timeout_error"),
    ],
)
async def test_status_fault_uses_a_fitting_error_type(
    sim: Simulator,
    client: anthropic.AsyncAnthropic,
    status: int,
    error_class: type[Exception],
    error_type: str,
) -> None:
    """Fault("status", status=N) answers N with the error type the real API uses for N."""
    sim.script(Fault("status", status=status))
    with pytest.raises(error_class) as info:
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert isinstance(info.value, anthropic.APIStatusError)
    assert (info.value.status_code, info.value.type) == (status, error_type)


async def test_reset_fault_drops_the_connection(sim: Simulator, client: anthropic.AsyncAnthropic) -> None:
    """Fault("reset") closes the socket without a response: the SDK raises APIConnectionError."""
    sim.script(Fault("reset"))
    with pytest.raises(anthropic.APIConnectionError) as info:
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert not isinstance(info.value, anthropic.APITimeoutError)
    assert (await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))).id
    stats = sim.stats()
    assert stats["faults"] == {"reset": 1}
    assert stats["by_status"] == {200: 1}


async def test_hang_fault_times_out_the_client_and_ends_on_disconnect(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """Fault("hang") sends nothing; the client times out, and the server stops waiting once it leaves."""
    sim.script(Fault("hang"))  # the default hang_s, 30 s: only the disconnect can end it quickly
    start = time.perf_counter()
    with pytest.raises(anthropic.APITimeoutError):
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"), timeout=0.2)
    assert time.perf_counter() - start < 10.0  # a generous bound, still a third of the 30 s hang
    for _ in range(500):
        if sim.stats()["in_flight"] == 0:
            break
        await asyncio.sleep(0.01)
    stats = sim.stats()
    assert (stats["in_flight"], stats["disconnects"], stats["faults"]) == (0, 1, {"hang": 1})


async def test_short_hang_delays_then_answers(sim: Simulator, client: anthropic.AsyncAnthropic) -> None:
    """A hang shorter than the client's patience is just a slow, normal answer."""
    sim.script(Fault("hang", hang_s=0.05))
    start = time.perf_counter()
    message = await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert time.perf_counter() - start >= 0.05
    assert message.stop_reason == "max_tokens"


async def test_hang_does_not_delay_shutdown(make_client: Any) -> None:
    """Closing a simulator with a hung request in flight is prompt, and the client sees a connection error."""
    sim = serve(hang_s=60.0).start()
    try:
        sim.script(Fault("hang"))
        pending = asyncio.ensure_future(
            make_client(sim).messages.create(model=MODEL, max_tokens=5, messages=user("x"))
        )
        for _ in range(200):
            if sim.stats()["in_flight"] == 1:
                break
            await asyncio.sleep(0.01)
        start = time.perf_counter()
    finally:
        sim.close()
    assert time.perf_counter() - start < 5.0  # generous, yet well under the 60 s hang
    with pytest.raises(anthropic.APIConnectionError):
        await pending


async def test_stream_overloaded_fails_mid_stream(sim: Simulator, client: anthropic.AsyncAnthropic) -> None:
    """Fault("stream_overloaded") streams some text, then an error event the SDK raises while iterating."""
    sim.script(Fault("stream_overloaded", after_tokens=6))
    received = ""

    async def drain() -> None:
        nonlocal received
        stream = await client.messages.create(model=MODEL, max_tokens=500, messages=user("x"), stream=True)
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                received += event.delta.text

    with pytest.raises(anthropic.APIStatusError) as info:
        await drain()
    assert info.value.type == "overloaded_error"
    assert 6 * 4 <= len(received) < 500
    assert received.startswith("[simulated")
    assert sim.stats()["faults"] == {"stream_overloaded": 1}


async def test_stream_overloaded_raw_frames(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """On the wire the stream ends with `event: error` and the overloaded_error envelope, no message_stop."""
    sim.script(Fault("stream_overloaded", after_tokens=0))
    async with http.post(
        f"{sim.base_url}/v1/messages", json=body("x", stream=True), headers={"x-api-key": API_KEY}
    ) as resp:
        raw = (await resp.read()).decode()
    frames = [f for f in raw.split("\n\n") if f]
    assert frames[0].startswith("event: message_start")
    assert "content_block_delta" not in raw
    assert "message_stop" not in raw
    event, data = frames[-1].split("\n")
    assert event == "event: error"
    assert json.loads(data[6:]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


async def test_stream_overloaded_without_stream_is_a_529(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """A non-streaming request that draws stream_overloaded gets a plain 529 overloaded_error."""
    sim.script(Fault("stream_overloaded"))
    with pytest.raises(anthropic.InternalServerError) as info:
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert (info.value.status_code, info.value.type) == (529, "overloaded_error")


async def test_malformed_fault_sends_invalid_json(sim: Simulator, client: anthropic.AsyncAnthropic) -> None:
    """Fault("malformed") answers 200 application/json with a body the SDK cannot decode."""
    sim.script(Fault("malformed"), times=2)
    raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(await raw.read())
    with pytest.raises(json.JSONDecodeError):  # this SDK surfaces the decode error itself
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))


async def test_malformed_fault_breaks_a_stream_too(sim: Simulator, client: anthropic.AsyncAnthropic) -> None:
    """For a streaming request the malformed fault sends an SSE frame whose data is not JSON."""
    sim.script(Fault("malformed"))
    stream = await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"), stream=True)
    with pytest.raises(ValueError, match="Expecting"):
        async for _ in stream:
            pass


async def test_scripted_faults_with_match_are_deterministic_under_concurrency(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """Scripted faults hit exactly the requests whose body matches, however the requests interleave."""
    sim.script(Fault("rate_limit", retry_after=0.01), times=2, match="agent-03 ")
    sim.script(Fault("overloaded"), times=1, match="agent-07 ")

    async def call(i: int) -> str:
        try:
            await client.messages.create(model=MODEL, max_tokens=5, messages=user(f"agent-{i:02d} go"))
        except anthropic.APIStatusError as exc:
            return str(exc.status_code)
        return "ok"

    outcomes = await asyncio.gather(*(call(i) for i in range(20)))
    assert outcomes[3] == "429"
    assert outcomes[7] == "529"
    assert outcomes.count("ok") == 18
    assert await call(3) == "429"  # the second scripted 429 for agent-03
    assert await call(3) == "ok"
    assert await call(7) == "ok"
    stats = sim.stats()
    assert stats["faults"] == {"overloaded": 1, "rate_limit": 2}
    assert stats["scripted_pending"] == 0


async def test_scripted_faults_are_consumed_in_order(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """Unmatched scripts apply to the next requests in the order they were queued."""
    sim.script(Fault("server_error"))
    sim.script(Fault("overloaded"), times=2)
    codes = []
    for _ in range(4):
        try:
            await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
            codes.append(200)
        except anthropic.APIStatusError as exc:
            codes.append(exc.status_code)
    assert codes == [500, 529, 529, 200]


async def _fates(sim: Simulator, client: anthropic.AsyncAnthropic, n: int) -> list[int]:
    fates = []
    for i in range(n):
        try:
            await client.messages.create(model=MODEL, max_tokens=5, messages=user(f"r{i}"))
            fates.append(200)
        except anthropic.APIStatusError as exc:
            fates.append(exc.status_code)
    return fates


async def test_probabilistic_faults_are_reproducible_with_the_same_seed(make_client: Any) -> None:
    """fault_rates draws from a seeded RNG: the same seed gives the same fates, in arrival order."""
    rates = {"server_error": 0.2, "overloaded": 0.2}
    with serve(seed=11, fault_rates=rates) as sim:
        client = make_client(sim)
        first = await _fates(sim, client, 30)
        stats = sim.stats()
        sim.reset()
        replay = await _fates(sim, client, 30)
    with serve(seed=11, fault_rates=rates) as twin:
        twin_run = await _fates(twin, make_client(twin), 30)
    with serve(seed=12, fault_rates=rates) as other:
        other_run = await _fates(other, make_client(other), 30)
    assert first == replay == twin_run
    assert first != other_run
    assert {500, 529, 200} == set(first)
    assert stats["faults"] == {"overloaded": first.count(529), "server_error": first.count(500)}


async def test_faults_come_before_auth_and_validation(make_client: Any) -> None:
    """A fault stands for the service failing first: even a request with a bad key gets the scripted 529."""
    with serve(api_key="right") as sim:
        sim.script(Fault("overloaded"))
        with pytest.raises(anthropic.InternalServerError):
            await make_client(sim, api_key="wrong").messages.create(
                model=MODEL, max_tokens=5, messages=user("x")
            )
        with pytest.raises(anthropic.AuthenticationError):
            await make_client(sim, api_key="wrong").messages.create(
                model=MODEL, max_tokens=5, messages=user("x")
            )
