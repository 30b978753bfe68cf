"""Configured rate limits: anthropic-ratelimit-* headers, 429s with retry-after, and reset()."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import anthropic
import pytest
from sim_support import MODEL, user

from claude_force_nb.sim import MESSAGE_OVERHEAD_TOKENS, estimate_tokens, serve

MINUTE = 60.0  # a bucket holding a whole minute: these tests count a limit down one request at a time
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_request_limit_counts_down_then_refuses(make_client: Any) -> None:
    """With requests_per_minute=3, remaining goes 2, 1, 0, then a 429 rate_limit_error with retry-after."""
    with serve(requests_per_minute=3, rate_limit_burst_s=MINUTE) as sim:
        client = make_client(sim)
        remaining = []
        for _ in range(3):
            raw = await client.messages.with_raw_response.create(
                model=MODEL, max_tokens=5, messages=user("x")
            )
            assert raw.headers["anthropic-ratelimit-requests-limit"] == "3"
            assert RFC3339.match(raw.headers["anthropic-ratelimit-requests-reset"])
            remaining.append(int(raw.headers["anthropic-ratelimit-requests-remaining"]))
        assert remaining == [2, 1, 0]
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
        stats = sim.stats()
    headers = info.value.response.headers
    assert info.value.type == "rate_limit_error"
    wait_s = float(headers["retry-after-ms"]) / 1000
    assert 19.0 < wait_s <= 20.0  # one request refills every 60 / 3 = 20 seconds
    assert headers["retry-after"] == str(math.ceil(wait_s))
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert "anthropic-ratelimit-tokens-limit" not in headers  # no token limit configured
    assert (stats["rate_limited"], stats["by_status"]) == (1, {200: 3, 429: 1})


async def test_input_token_limit_refuses_a_request_that_does_not_fit(make_client: Any) -> None:
    """input_tokens_per_minute is charged each request's input tokens; one that does not fit is a 429."""
    prompt = "x" * 200  # 50 tokens + 4 overhead = 54 per request
    cost = estimate_tokens(prompt) + MESSAGE_OVERHEAD_TOKENS
    with serve(input_tokens_per_minute=100, rate_limit_burst_s=MINUTE) as sim:
        client = make_client(sim)
        raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=5, messages=user(prompt))
        assert raw.headers["anthropic-ratelimit-input-tokens-limit"] == "100"
        assert raw.headers["anthropic-ratelimit-input-tokens-remaining"] == str(100 - cost)
        assert raw.headers["anthropic-ratelimit-tokens-remaining"] == str(100 - cost)
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model=MODEL, max_tokens=5, messages=user(prompt))
        assert "input tokens" in str(info.value.api_message)
        assert int(info.value.response.headers["retry-after"]) >= 1
        assert (await client.messages.create(model=MODEL, max_tokens=5, messages=user("small"))).id


async def test_output_token_limit_is_charged_after_the_answer(make_client: Any) -> None:
    """output_tokens_per_minute admits while positive, charges the real output, then refuses."""
    with serve(
        output_tokens_per_minute=50, min_output_tokens=60, max_output_tokens=60, rate_limit_burst_s=MINUTE
    ) as sim:
        client = make_client(sim)
        first = await client.messages.create(model=MODEL, max_tokens=1000, messages=user("long"))
        assert first.usage.output_tokens >= 60
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model=MODEL, max_tokens=1000, messages=user("long"))
    assert "output tokens" in str(info.value.api_message)
    assert info.value.response.headers["anthropic-ratelimit-output-tokens-remaining"] == "0"


async def test_tokens_headers_report_the_most_restrictive_token_limit(make_client: Any) -> None:
    """anthropic-ratelimit-tokens-* mirrors whichever of the input and output buckets has less left."""
    with serve(
        input_tokens_per_minute=10_000, output_tokens_per_minute=500, rate_limit_burst_s=MINUTE
    ) as sim:
        raw = await make_client(sim).messages.with_raw_response.create(
            model=MODEL, max_tokens=5, messages=user("x")
        )
    assert raw.headers["anthropic-ratelimit-tokens-limit"] == "500"
    assert raw.headers["anthropic-ratelimit-output-tokens-limit"] == "500"
    assert raw.headers["anthropic-ratelimit-input-tokens-limit"] == "10000"


async def test_reset_refills_the_rate_windows(make_client: Any) -> None:
    """reset() starts the limits from full buckets again."""
    with serve(requests_per_minute=1, rate_limit_burst_s=MINUTE) as sim:
        client = make_client(sim)
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
        sim.reset()
        assert (await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))).id


async def test_unlimited_simulator_sends_no_ratelimit_headers(client: anthropic.AsyncAnthropic) -> None:
    """Without configured limits no anthropic-ratelimit-* header is sent."""
    raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert not [name for name in raw.headers if name.startswith("anthropic-ratelimit-")]


async def test_limits_are_enforced_over_short_intervals_by_default(make_client: Any) -> None:
    """By default a per-minute limit holds one second's worth: 30 requests at once under 720 RPM get 12
    through (a minute's bucket would have let all 30), and the headers still state the per-minute limit. The
    simulator's clock stands still, so nothing refills while the requests arrive."""
    rpm, burst = 720, 30
    with serve(requests_per_minute=rpm, clock=lambda: 0.0) as sim:
        client = make_client(sim)
        outcomes = await asyncio.gather(
            *(
                client.messages.with_raw_response.create(model=MODEL, max_tokens=5, messages=user("x"))
                for _ in range(burst)
            ),
            return_exceptions=True,
        )
    admitted = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(admitted) == rpm // 60
    assert all(isinstance(o, anthropic.RateLimitError) for o in outcomes if isinstance(o, BaseException))
    assert {o.headers["anthropic-ratelimit-requests-limit"] for o in admitted} == {str(rpm)}
