"""The backend's own parsing (JSON answers and rate-limit headers, as tables) and its choice of transport."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from claude_force_nb import MalformedResponseError
from claude_force_nb._backends.anthropic import AnthropicBackend, _from_json, parse_rate_limit_headers
from claude_force_nb.sim import Simulator

GOOD = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-5-5",
    "content": [
        {"type": "thinking", "thinking": "..."},
        {"type": "text", "text": "Hello"},
        {"type": "text", "text": "!"},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 3,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": 2,
        "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 3},
    },
}


def test_a_messages_body_becomes_a_completion() -> None:
    """Text blocks are joined (others ignored); usage, ids and the 1-hour cache-write split are kept."""
    completion = _from_json(GOOD, {}, "req_1")
    assert completion.text == "Hello!"
    assert (completion.model, completion.stop_reason, completion.message_id) == (
        "claude-haiku-5-5",
        "end_turn",
        "msg_1",
    )
    usage = completion.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens) == (10, 3, 7)
    assert (usage.cache_read_input_tokens, usage.cache_creation_1h_input_tokens) == (2, 3)
    assert completion.request_id == "req_1"


@pytest.mark.parametrize("body", [[], {}, {"content": "x", "usage": {}}, {**GOOD, "usage": None}, "text"])
def test_bodies_that_are_not_messages_are_malformed(body: object) -> None:
    """Anything that is not a Messages response is a MalformedResponseError, not a crash."""
    with pytest.raises(MalformedResponseError):
        _from_json(body, {}, None)


def test_rate_limit_headers() -> None:
    """anthropic-ratelimit-* headers become remaining/limit/reset per kind; absent headers give None."""
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "3",
        "anthropic-ratelimit-requests-reset": "1970-01-01T00:01:40Z",
        "Anthropic-RateLimit-Output-Tokens-Remaining": "900",
        "anthropic-ratelimit-output-tokens-limit": "1000",
        "content-type": "application/json",
    }
    snapshot = parse_rate_limit_headers(headers, now=60.0)
    assert snapshot is not None
    assert snapshot.remaining == {"requests": 3, "output-tokens": 900}
    assert snapshot.limit == {"requests": 50, "output-tokens": 1000}
    assert snapshot.reset_in_s == {"requests": 40.0}
    assert parse_rate_limit_headers({"content-type": "x"}, now=0.0) is None


def test_without_aiohttp_the_httpx_fallback_warns_and_still_works(sim: Simulator) -> None:
    """With the SDK's aiohttp transport unavailable (aiohttp missing), the backend says so in a warning that
    names the fix, then answers through the httpx transport."""
    code = (
        "import asyncio, sys, warnings\n"
        "sys.modules['aiohttp'] = None  # as if aiohttp were not installed: importing it fails\n"
        "from claude_force_nb._backends.anthropic import AnthropicBackend\n"
        "from claude_force_nb._request import ChatMessage, MessageRequest\n"
        "async def main():\n"
        f"    backend = AnthropicBackend(api_key='test-key', base_url={sim.base_url!r})\n"
        "    request = MessageRequest(model='claude-haiku-4-5', system='', max_tokens=32,\n"
        "                             messages=(ChatMessage('user', 'hello'),))\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        completion = await backend.complete(request)\n"
        "    await backend.aclose()\n"
        "    print(type(completion).__name__, bool(completion.text))\n"
        "    for w in caught:\n"
        "        print(w.category.__name__, w.message)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "Completion True"
    assert len(lines) == 2, lines
    assert lines[1].startswith("ClaudeForceWarning") and "aiohttp transport is unavailable" in lines[1]
    assert "anthropic[aiohttp]" in lines[1] and "transport='httpx'" in lines[1]


async def test_the_default_transport_is_aiohttp_without_a_warning(sim: Simulator) -> None:
    """With aiohttp installed (a declared dependency), the default backend uses it and warns nothing."""
    import anthropic

    backend = AnthropicBackend(api_key="test-key", base_url=sim.base_url)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = backend.client()
    try:
        assert isinstance(client._client, anthropic.DefaultAioHttpClient)
    finally:
        await backend.aclose()


async def test_a_connection_failure_names_its_cause() -> None:
    """The SDK says only "Connection error."; the call's error also names what failed underneath (here the
    refused connection to a loopback port nothing listens on), so a user can tell a wrong address from a
    broken connection pool without a traceback."""
    import socket

    from claude_force_nb import AsyncAgentOrchestrator, define_agent

    define_agent("a", "x")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncAgentOrchestrator(
        base_url=f"http://127.0.0.1:{port}", api_key="test", enable_cache=False, max_retries=0
    ) as orch:
        result = await orch.execute_agent("a", "task")
    assert not result.success and result.errors[0].startswith("connection failed: Connection error. (")
    assert "ConnectionRefusedError" in result.errors[0] and str(port) in result.errors[0]
