"""The JSON path of /v1/messages and count_tokens through the real SDK: shape, determinism, limits, errors."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import anthropic
import pytest
from sim_support import API_KEY, MODEL, user

from claude_force_nb.sim import MESSAGE_OVERHEAD_TOKENS, Simulator, estimate_tokens, serve


async def test_json_response_has_the_message_shape_and_usage(client: anthropic.AsyncAnthropic) -> None:
    """A plain request returns a complete Message whose usage follows the public token formula."""
    prompt = "Explain prompt caching.\nIn detail please."
    system = "You are terse."
    raw = await client.messages.with_raw_response.create(
        model=MODEL, max_tokens=2000, system=system, messages=user(prompt)
    )
    message = await raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert [block.type for block in message.content] == ["text"]
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f'[simulated {MODEL}]\nYou asked: "Explain prompt caching."\n')
    assert text.endswith(".")
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    usage = message.usage
    assert usage.input_tokens == estimate_tokens(system) + MESSAGE_OVERHEAD_TOKENS + estimate_tokens(prompt)
    assert usage.output_tokens == estimate_tokens(text)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 0
    assert usage.cache_creation.ephemeral_1h_input_tokens == 0
    assert usage.service_tier == "standard"


async def test_long_quotes_are_truncated(client: anthropic.AsyncAnthropic) -> None:
    """The quoted line is the first non-empty line of the last user message, cut to a short excerpt."""
    long_line = "word " * 40
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [{"type": "text", "text": "\n\n" + long_line + "\nsecond line"}]},
    ]
    message = await client.messages.create(model=MODEL, max_tokens=500, messages=messages)  # type: ignore[arg-type]
    second_line = message.content[0].text.splitlines()[1]  # type: ignore[union-attr]
    assert second_line.startswith('You asked: "word word')
    assert second_line.endswith('..."')
    assert len(second_line) < 80


async def test_same_request_gives_the_same_text(client: anthropic.AsyncAnthropic) -> None:
    """Answers are a pure function of the request and the seed."""
    first = await client.messages.create(model=MODEL, max_tokens=1000, messages=user("same"))
    second = await client.messages.create(model=MODEL, max_tokens=1000, messages=user("same"))
    assert first.content == second.content
    assert first.usage == second.usage
    assert first.id != second.id


async def test_different_request_or_seed_gives_different_text(
    client: anthropic.AsyncAnthropic, make_client: Any
) -> None:
    """Changing the prompt, the temperature (an extra field here) or the seed changes the answer."""
    base = await client.messages.create(model=MODEL, max_tokens=1000, messages=user("q"))
    other_prompt = await client.messages.create(model=MODEL, max_tokens=1000, messages=user("r"))
    other_temp = await client.messages.create(
        model=MODEL, max_tokens=1000, messages=user("q"), extra_body={"temperature": 0.0}
    )
    with serve(seed=8) as other_sim:
        reseeded = await make_client(other_sim).messages.create(
            model=MODEL, max_tokens=1000, messages=user("q")
        )
    with serve(seed=7) as same_seed_sim:
        replayed = await make_client(same_seed_sim).messages.create(
            model=MODEL, max_tokens=1000, messages=user("q")
        )

    def body(m: anthropic.types.Message) -> str:
        return m.content[0].text.split("\n", 2)[2]  # type: ignore[union-attr]

    assert body(base) != body(other_prompt)
    assert body(base) != body(other_temp)
    assert body(base) != body(reseeded)
    assert body(base) == body(replayed)


async def test_max_tokens_cuts_the_answer(client: anthropic.AsyncAnthropic) -> None:
    """A max_tokens below the natural length stops at exactly max_tokens, with a prefix of the full answer."""
    full = await client.messages.create(model=MODEL, max_tokens=4000, messages=user("cut me"))
    cut = await client.messages.create(model=MODEL, max_tokens=10, messages=user("cut me"))
    assert cut.stop_reason == "max_tokens"
    assert cut.usage.output_tokens == 10
    cut_text = cut.content[0].text  # type: ignore[union-attr]
    assert full.content[0].text.startswith(cut_text)  # type: ignore[union-attr]
    assert len(cut_text) == 40


async def test_stop_sequence_ends_the_answer_before_it(client: anthropic.AsyncAnthropic) -> None:
    """A stop sequence that the answer produces cuts the text before it and is reported."""
    full = await client.messages.create(model=MODEL, max_tokens=4000, messages=user("stop"))
    full_text = full.content[0].text  # type: ignore[union-attr]
    stop = full_text.split("\n")[2].split()[2]  # a word from the filler prose
    stopped = await client.messages.create(
        model=MODEL, max_tokens=4000, messages=user("stop"), stop_sequences=["never-there", stop]
    )
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == stop
    assert stopped.content[0].text == full_text[: full_text.index(stop)]  # type: ignore[union-attr]
    missing = await client.messages.create(
        model=MODEL, max_tokens=4000, messages=user("stop"), stop_sequences=["never-there"]
    )
    assert (missing.stop_reason, missing.stop_sequence) == ("end_turn", None)


async def test_count_tokens_matches_the_formula(client: anthropic.AsyncAnthropic) -> None:
    """count_tokens reports every input token (system, tools, messages and per-message overhead)."""
    tool = {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}}
    messages = [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
        {"role": "user", "content": "again"},
    ]
    counted = await client.messages.count_tokens(
        model=MODEL,
        system="sys",
        tools=[tool],  # type: ignore[list-item]
        messages=messages,  # type: ignore[arg-type]
    )
    tool_json = '{"description":"Look a word up.","input_schema":{"type":"object"},"name":"lookup"}'
    expected = (
        estimate_tokens(tool_json)
        + estimate_tokens("sys")
        + 3 * MESSAGE_OVERHEAD_TOKENS
        + estimate_tokens("hello there")
        + estimate_tokens("hi")
        + estimate_tokens("again")
    )
    assert counted.input_tokens == expected
    created = await client.messages.create(
        model=MODEL,
        max_tokens=50,
        system="sys",
        tools=[tool],  # type: ignore[list-item]
        messages=messages,  # type: ignore[arg-type]
    )
    assert created.usage.input_tokens == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"max_tokens": 10, "messages": user("x")}, "model"),
        ({"model": "", "max_tokens": 10, "messages": user("x")}, "model"),
        ({"model": MODEL, "messages": user("x")}, "max_tokens"),
        ({"model": MODEL, "max_tokens": -1, "messages": user("x")}, "max_tokens"),
        ({"model": MODEL, "max_tokens": True, "messages": user("x")}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 10, "messages": []}, "messages"),
        ({"model": MODEL, "max_tokens": 10, "messages": "hi"}, "messages"),
        ({"model": MODEL, "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}, "role"),
        ({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": 3}]}, "content"),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "type",
        ),
        ({"model": MODEL, "max_tokens": 10, "messages": user("x"), "system": 5}, "system"),
        ({"model": MODEL, "max_tokens": 10, "messages": user("x"), "system": [{"type": "image"}]}, "system"),
        ({"model": MODEL, "max_tokens": 10, "messages": user("x"), "temperature": 1.5}, "temperature"),
        ({"model": MODEL, "max_tokens": 10, "messages": user("x"), "temperature": "hot"}, "temperature"),
        ({"model": MODEL, "max_tokens": 10, "messages": user("x"), "stop_sequences": [""]}, "stop_sequences"),
        (
            {
                "model": MODEL,
                "max_tokens": 10,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "x", "cache_control": {"type": "forever"}}],
                    }
                ],
            },
            "cache_control",
        ),
    ],
)
async def test_invalid_requests_get_400(
    sim: Simulator, http: aiohttp.ClientSession, body: dict[str, Any], fragment: str
) -> None:
    """Each malformed field gets a 400 invalid_request_error naming it, in the real error envelope."""
    async with http.post(f"{sim.base_url}/v1/messages", json=body, headers={"x-api-key": API_KEY}) as resp:
        assert resp.status == 400
        payload = await resp.json()
        assert resp.headers["request-id"] == payload["request_id"]
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert fragment in payload["error"]["message"]


async def test_malformed_json_body_gets_400(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A body that is not JSON is a 400, not a crash."""
    async with http.post(f"{sim.base_url}/v1/messages", data=b"{nope", headers={"x-api-key": "k"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_invalid_request_through_the_sdk_is_bad_request_error(client: anthropic.AsyncAnthropic) -> None:
    """The SDK maps the simulator's 400 to anthropic.BadRequestError."""
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=MODEL, max_tokens=10, messages=user("x"), extra_body={"temperature": 3.0}
        )
    assert info.value.type == "invalid_request_error"


async def test_missing_or_wrong_api_key_gets_401(make_client: Any, http: aiohttp.ClientSession) -> None:
    """With api_key configured, other keys get 401; a missing key is always 401."""
    with serve(api_key="right") as sim:
        ok = await make_client(sim, api_key="right").messages.create(
            model=MODEL, max_tokens=5, messages=user("x")
        )
        assert ok.stop_reason == "max_tokens"
        with pytest.raises(anthropic.AuthenticationError) as info:
            await make_client(sim, api_key="wrong").messages.create(
                model=MODEL, max_tokens=5, messages=user("x")
            )
        assert info.value.type == "authentication_error"
        body = {"model": MODEL, "max_tokens": 5, "messages": user("x")}
        async with http.post(f"{sim.base_url}/v1/messages", json=body) as resp:
            assert resp.status == 401


async def test_any_key_is_accepted_when_none_is_configured(
    client: anthropic.AsyncAnthropic, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without api_key any non-empty key works, and a bearer auth token counts as a key too."""
    assert (await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))).id
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # so the bearer client sends no x-api-key
    async with anthropic.AsyncAnthropic(base_url=sim.base_url, auth_token="tok", max_retries=0) as bearer:
        assert (await bearer.messages.create(model=MODEL, max_tokens=5, messages=user("x"))).id
    assert "authorization" not in sim.requests[-1]["headers"]
    assert "x-api-key" not in sim.requests[-1]["headers"]


async def test_restricted_models_get_404_for_others(make_client: Any) -> None:
    """With `models` set, an unknown model id is a 404 not_found_error naming it."""
    with serve(models={"claude-a", "claude-b"}) as sim:
        client = make_client(sim)
        assert (
            await client.messages.create(model="claude-a", max_tokens=5, messages=user("x"))
        ).model == "claude-a"
        with pytest.raises(anthropic.NotFoundError) as info:
            await client.messages.create(model="claude-z", max_tokens=5, messages=user("x"))
        assert info.value.type == "not_found_error"
        assert "claude-z" in str(info.value.api_message)


async def test_unknown_paths_and_methods_get_api_shaped_errors(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Unknown paths are 404 and wrong methods 405, both in the error envelope with a request-id."""
    async with http.get(f"{sim.base_url}/v1/nothing") as resp:
        assert resp.status == 404
        assert resp.headers["request-id"].startswith("req_")
        assert (await resp.json())["error"]["type"] == "not_found_error"
    async with http.get(f"{sim.base_url}/v1/messages") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_latency_model_delays_the_json_answer(make_client: Any) -> None:
    """A non-streaming answer takes at least ttft_s + per_token_s * output_tokens."""
    with serve(ttft_s=0.05, per_token_s=0.002, min_output_tokens=20, max_output_tokens=20) as sim:
        client = make_client(sim)
        start = time.perf_counter()
        message = await client.messages.create(model=MODEL, max_tokens=1000, messages=user("slow"))
        elapsed = time.perf_counter() - start
    expected = 0.05 + 0.002 * message.usage.output_tokens
    assert expected <= elapsed < expected + 5.0  # the upper bound only catches a runaway delay
