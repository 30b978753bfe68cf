"""count_tokens' own requests-per-minute limit, through the real SDK."""

from __future__ import annotations

import anthropic
import pytest

from claude_force_nb.sim import serve


async def test_count_tokens_has_its_own_request_limit() -> None:
    """Past count_tokens_per_minute, count_tokens answers 429 with retry-after; Messages calls are not
    affected, and the simulator counts the refusals."""
    with serve(count_tokens_per_minute=2, rate_limit_burst_s=60) as sim:  # a bucket of a whole minute
        client = anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="sim", max_retries=0)
        messages = [{"role": "user", "content": "count me"}]
        async with client:
            for _ in range(2):
                counted = await client.messages.count_tokens(model="m", messages=messages)  # type: ignore[arg-type]
                assert counted.input_tokens > 0
            with pytest.raises(anthropic.RateLimitError) as caught:
                await client.messages.count_tokens(model="m", messages=messages)  # type: ignore[arg-type]
            assert float(caught.value.response.headers["retry-after"]) > 0
            answer = await client.messages.create(model="m", max_tokens=5, messages=messages)  # type: ignore[arg-type]
            assert answer.content
        stats = sim.stats()
    assert stats["count_tokens"] == 3 and stats["count_tokens_limited"] == 1
    assert stats["by_status"] == {200: 3, 429: 1}
