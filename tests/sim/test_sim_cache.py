"""Prompt-cache emulation through the SDK: writes, reads, TTLs, minimums and isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from sim_support import MODEL, user

from claude_force_nb.sim import MESSAGE_OVERHEAD_TOKENS, Simulator, estimate_tokens, serve

PREFIX = "Shared instructions. " * 20  # 420 characters: 105 tokens
PREFIX_TOKENS = estimate_tokens(PREFIX)
QUESTION = "hi"
TAIL_TOKENS = MESSAGE_OVERHEAD_TOKENS + estimate_tokens(QUESTION)


@pytest.fixture
def cache_sim() -> Iterator[Simulator]:
    """A simulator whose cache minimum (50 tokens) suits small prompts; TTLs stay at their real lengths."""
    with serve(min_cache_tokens=50) as sim:
        yield sim


def cached_system(ttl: str | None = None, text: str = PREFIX) -> list[dict[str, Any]]:
    control: dict[str, Any] = {"type": "ephemeral"}
    if ttl is not None:
        control["ttl"] = ttl
    return [{"type": "text", "text": text, "cache_control": control}]


async def ask(client: anthropic.AsyncAnthropic, *, system: Any, question: str = QUESTION, **kw: Any) -> Any:
    message = await client.messages.create(
        model=kw.pop("model", MODEL), max_tokens=20, system=system, messages=user(question), **kw
    )
    return message.usage


async def test_first_request_writes_and_repeat_reads(cache_sim: Simulator, make_client: Any) -> None:
    """The first request creates the cached prefix; a repeat reads it; input_tokens counts only the rest."""
    client = make_client(cache_sim)
    first = await ask(client, system=cached_system())
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (PREFIX_TOKENS, 0)
    assert first.cache_creation.ephemeral_5m_input_tokens == PREFIX_TOKENS
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    assert first.input_tokens == TAIL_TOKENS
    second = await ask(client, system=cached_system())
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, PREFIX_TOKENS)
    assert second.input_tokens == TAIL_TOKENS
    stats = cache_sim.stats()
    assert (stats["cache_writes"], stats["cache_reads"]) == (1, 1)
    assert (stats["cache_write_tokens"], stats["cache_read_tokens"]) == (PREFIX_TOKENS, PREFIX_TOKENS)


async def test_one_hour_ttl_is_reported_separately(cache_sim: Simulator, make_client: Any) -> None:
    """A ttl="1h" breakpoint bills its write as ephemeral_1h_input_tokens."""
    usage = await ask(make_client(cache_sim), system=cached_system("1h"))
    assert usage.cache_creation.ephemeral_1h_input_tokens == PREFIX_TOKENS
    assert usage.cache_creation.ephemeral_5m_input_tokens == 0


async def test_entries_expire_after_the_configured_ttl(make_client: Any) -> None:
    """After the (shortened) TTL the prefix is written again instead of read; each TTL has its own length."""
    with serve(min_cache_tokens=50, cache_ttl_5m_s=0.1, cache_ttl_1h_s=30.0) as sim:
        client = make_client(sim)
        await ask(client, system=cached_system())
        await ask(client, system=cached_system("1h", PREFIX.upper()))
        await asyncio.sleep(0.15)
        again = await ask(client, system=cached_system())
        long_lived = await ask(client, system=cached_system("1h", PREFIX.upper()))
    assert (again.cache_creation_input_tokens, again.cache_read_input_tokens) == (PREFIX_TOKENS, 0)
    assert long_lived.cache_read_input_tokens == PREFIX_TOKENS


async def test_a_read_refreshes_the_ttl(make_client: Any) -> None:
    """Reading an entry restarts its TTL, so steady traffic keeps a prefix cached."""
    with serve(min_cache_tokens=50, cache_ttl_5m_s=1.5) as sim:
        client = make_client(sim)
        await ask(client, system=cached_system())
        for _ in range(4):  # 2 s in total: longer than one TTL, never a TTL without a read (1 s of slack)
            await asyncio.sleep(0.5)
            usage = await ask(client, system=cached_system())
            assert usage.cache_read_input_tokens == PREFIX_TOKENS


async def test_prefix_below_the_minimum_is_not_cached(make_client: Any) -> None:
    """Below min_cache_tokens nothing is cached, silently: every token is plain input."""
    with serve() as sim:  # the default minimum, 1024 tokens
        client = make_client(sim)
        for _ in range(2):
            usage = await ask(client, system=cached_system())
            assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
            assert usage.input_tokens == PREFIX_TOKENS + TAIL_TOKENS


async def test_minimum_can_depend_on_the_model_prefix(make_client: Any) -> None:
    """A min_cache_tokens mapping picks the longest matching model prefix."""
    with serve(min_cache_tokens={"": 50, "claude-haiku": 2048}) as sim:
        client = make_client(sim)
        haiku = await ask(client, system=cached_system(), model="claude-haiku-9")
        other = await ask(client, system=cached_system(), model="claude-opus-9")
    assert haiku.cache_creation_input_tokens == 0
    assert other.cache_creation_input_tokens == PREFIX_TOKENS


async def test_cache_is_per_api_key_and_model(cache_sim: Simulator, make_client: Any) -> None:
    """Another key or another model does not see a prefix cached by the first."""
    await ask(make_client(cache_sim, api_key="key-a"), system=cached_system())
    other_key = await ask(make_client(cache_sim, api_key="key-b"), system=cached_system())
    other_model = await ask(
        make_client(cache_sim, api_key="key-a"), system=cached_system(), model="claude-other"
    )
    assert other_key.cache_creation_input_tokens == PREFIX_TOKENS
    assert other_model.cache_creation_input_tokens == PREFIX_TOKENS


async def test_longest_cached_breakpoint_is_read_and_the_rest_written(
    cache_sim: Simulator, make_client: Any
) -> None:
    """With two breakpoints, a changed tail reads the shared system prefix and writes only the new segment."""
    client = make_client(cache_sim)
    turn = "Conversation so far. " * 10  # 210 characters: 53 tokens

    def messages(question: str) -> list[dict[str, Any]]:
        blocks = [
            {"type": "text", "text": turn + question, "cache_control": {"type": "ephemeral"}},
        ]
        return [{"role": "user", "content": blocks}]

    first = await client.messages.create(
        model=MODEL, max_tokens=5, system=cached_system(), messages=messages("a")
    )
    segment_a = MESSAGE_OVERHEAD_TOKENS + estimate_tokens(turn + "a")
    assert first.usage.cache_creation_input_tokens == PREFIX_TOKENS + segment_a
    assert first.usage.input_tokens == 0
    second = await client.messages.create(
        model=MODEL, max_tokens=5, system=cached_system(), messages=messages("b")
    )
    assert second.usage.cache_read_input_tokens == PREFIX_TOKENS
    assert second.usage.cache_creation_input_tokens == MESSAGE_OVERHEAD_TOKENS + estimate_tokens(turn + "b")


async def test_tools_and_top_level_cache_control_mark_prefixes(
    cache_sim: Simulator, make_client: Any
) -> None:
    """cache_control on a tool caches the tools; top-level cache_control caches up to the last block."""
    client = make_client(cache_sim)
    tool = {"name": "lookup", "description": PREFIX, "input_schema": {"type": "object"}}
    cached_tool = {**tool, "cache_control": {"type": "ephemeral"}}
    tool_tokens = estimate_tokens(
        '{"description":"' + PREFIX + '","input_schema":{"type":"object"},"name":"lookup"}'
    )
    first = await client.messages.create(model=MODEL, max_tokens=5, tools=[cached_tool], messages=user("q"))
    assert first.usage.cache_creation_input_tokens == tool_tokens
    whole = [{"role": "user", "content": PREFIX}]
    auto = await client.messages.create(
        model=MODEL,
        max_tokens=5,
        messages=whole,  # type: ignore[arg-type]
        cache_control={"type": "ephemeral"},
    )
    assert auto.usage.cache_creation_input_tokens == MESSAGE_OVERHEAD_TOKENS + PREFIX_TOKENS
    assert auto.usage.input_tokens == 0


async def test_max_tokens_zero_prewarms_the_cache(cache_sim: Simulator, make_client: Any) -> None:
    """max_tokens=0 writes the cache and returns no content, as the real API's pre-warming does."""
    client = make_client(cache_sim)
    warm = await client.messages.create(
        model=MODEL, max_tokens=0, system=cached_system(), messages=user(QUESTION)
    )
    assert warm.content == []
    assert (warm.stop_reason, warm.usage.output_tokens) == ("max_tokens", 0)
    assert warm.usage.cache_creation_input_tokens == PREFIX_TOKENS
    assert (await ask(client, system=cached_system())).cache_read_input_tokens == PREFIX_TOKENS


async def test_streamed_usage_reports_the_cache_too(cache_sim: Simulator, make_client: Any) -> None:
    """A streamed cache read reports the same usage as the JSON path."""
    client = make_client(cache_sim)
    await ask(client, system=cached_system())
    json_usage = await ask(client, system=cached_system())
    async with client.messages.stream(
        model=MODEL, max_tokens=20, system=cached_system(), messages=user(QUESTION)
    ) as stream:
        streamed = await stream.get_final_message()
    assert streamed.usage.cache_read_input_tokens == json_usage.cache_read_input_tokens == PREFIX_TOKENS
    assert streamed.usage.input_tokens == json_usage.input_tokens
    assert streamed.usage.output_tokens == json_usage.output_tokens
