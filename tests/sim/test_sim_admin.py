"""The control surface: stats, recorded requests, reset, and the /_sim/ admin endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anthropic
import pytest
from sim_support import API_KEY, MODEL, body, user

from claude_force_nb.sim import Fault, Simulator, serve


async def test_stats_count_requests_statuses_faults_and_tokens(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """stats() counts requests, statuses, faults, tokens, count_tokens calls and peak concurrency."""
    sim.script(Fault("overloaded"))
    with pytest.raises(anthropic.InternalServerError):
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("a"))
    messages = await asyncio.gather(
        *(client.messages.create(model=MODEL, max_tokens=7, messages=user(f"b{i}")) for i in range(5))
    )
    await client.messages.count_tokens(model=MODEL, messages=user("c"))
    stats = sim.stats()
    assert stats["requests"] == 6
    assert stats["count_tokens"] == 1
    assert stats["by_status"] == {200: 6, 529: 1}
    assert stats["faults"] == {"overloaded": 1}
    assert stats["output_tokens"] == sum(m.usage.output_tokens for m in messages) == 35
    assert stats["input_tokens"] == sum(m.usage.input_tokens for m in messages)
    assert stats["in_flight"] == 0
    assert 1 <= stats["peak_in_flight"] <= 5
    assert stats["streamed"] == stats["disconnects"] == stats["rate_limited"] == 0


async def test_requests_are_recorded_without_secrets(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """sim.requests keeps path, lower-cased headers minus the API key, the JSON body and the outcome."""
    sim.script(Fault("rate_limit"), match="second")
    await client.messages.create(model=MODEL, max_tokens=5, messages=user("first"))
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("second"))
    first, second = sim.requests
    assert first["path"] == "/v1/messages"
    assert first["json"]["messages"] == user("first")
    assert (first["status"], first["fault"], first["stream"]) == (200, None, False)
    assert (second["status"], second["fault"]) == (429, "rate_limit")
    assert "x-api-key" not in first["headers"]
    assert first["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in first["headers"])
    assert API_KEY not in str(sim.requests)
    assert first["id"].startswith("req_")


async def test_recorded_requests_are_bounded(make_client: Any) -> None:
    """Only the most recent record_limit requests are kept."""
    with serve(record_limit=3) as sim:
        client = make_client(sim)
        for i in range(5):
            await client.messages.create(model=MODEL, max_tokens=1, messages=user(f"n{i}"))
        assert [r["json"]["messages"][0]["content"] for r in sim.requests] == ["n2", "n3", "n4"]


async def test_reset_clears_everything(sim: Simulator, client: anthropic.AsyncAnthropic) -> None:
    """reset() clears counters, records and pending scripts."""
    await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    sim.script(Fault("overloaded"), times=3)
    sim.reset()
    stats = sim.stats()
    assert (stats["requests"], stats["by_status"], stats["scripted_pending"]) == (0, {}, 0)
    assert sim.requests == []
    assert (await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))).id


async def test_admin_endpoints_over_http(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """/_sim/health, script, stats, requests, config and reset work over plain HTTP."""
    url = sim.base_url
    async with http.get(f"{url}/_sim/health") as resp:
        assert (await resp.json())["status"] == "ok"
    spec = {"fault": {"kind": "status", "status": 418}, "times": 1, "match": "teapot"}
    async with http.post(f"{url}/_sim/script", json=spec) as resp:
        assert (await resp.json()) == {"ok": True, "pending": 1}
    async with http.post(f"{url}/v1/messages", json=body("teapot"), headers={"x-api-key": "k"}) as resp:
        assert resp.status == 418
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    async with http.get(f"{url}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["by_status"] == {"418": 1}
    assert stats["faults"] == {"status": 1}
    async with http.get(f"{url}/_sim/requests") as resp:
        assert [r["status"] for r in await resp.json()] == [418]
    async with http.get(f"{url}/_sim/config") as resp:
        assert (await resp.json())["seed"] == 7
    async with http.post(f"{url}/_sim/reset") as resp:
        assert (await resp.json()) == {"ok": True}
    assert sim.stats()["requests"] == 0


@pytest.mark.parametrize(
    "spec",
    [
        {"fault": {"kind": "meteor"}},
        {"fault": {"kind": "status"}},
        {"fault": {"kind": "overloaded", "colour": "red"}},
        {"fault": {"kind": "overloaded"}, "times": 0},
        {"times": 1},
        ["not", "an", "object"],
    ],
)
async def test_admin_script_rejects_bad_specs(sim: Simulator, http: aiohttp.ClientSession, spec: Any) -> None:
    """A malformed fault script is a 400 that says what is wrong, and queues nothing."""
    async with http.post(f"{sim.base_url}/_sim/script", json=spec) as resp:
        assert resp.status == 400
        assert "bad fault script" in (await resp.json())["error"]["message"]
    assert sim.stats()["scripted_pending"] == 0


def test_script_validates_its_arguments(sim: Simulator) -> None:
    """script() refuses a non-Fault, a non-positive times and an empty match."""
    with pytest.raises(ValueError, match="Fault"):
        sim.script("overloaded")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        sim.script(Fault("overloaded"), times=0)
    with pytest.raises(ValueError, match="match"):
        sim.script(Fault("overloaded"), match="")


def test_handle_refuses_use_before_start() -> None:
    """An unstarted Simulator says how to start it instead of failing obscurely."""
    sim = serve()
    assert "not started" in repr(sim)
    with pytest.raises(RuntimeError, match="not running"):
        _ = sim.base_url
    sim.close()  # closing an unstarted handle is harmless
