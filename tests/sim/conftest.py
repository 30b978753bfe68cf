"""Fixtures for the simulator tests: SDK clients and raw HTTP sessions (the shared, per-test-reset `sim`
comes from the top-level conftest).

Tests that need a differently configured simulator start their own with `serve(...)`; the `make_client`
fixture gives them SDK clients that are closed at teardown, so no test leaks a connection pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
from sim_support import API_KEY

from claude_force_nb.sim import Simulator


@pytest.fixture
async def make_client() -> AsyncIterator[Any]:
    """A factory of AsyncAnthropic clients pointed at a simulator; every client is closed at teardown."""
    clients: list[anthropic.AsyncAnthropic] = []

    def factory(target: Simulator, *, api_key: str = API_KEY, **kwargs: Any) -> anthropic.AsyncAnthropic:
        kwargs.setdefault("max_retries", 0)
        client = anthropic.AsyncAnthropic(base_url=target.base_url, api_key=api_key, **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
def client(sim: Simulator, make_client: Any) -> anthropic.AsyncAnthropic:
    """An SDK client (no retries) for the shared simulator."""
    result: anthropic.AsyncAnthropic = make_client(sim)
    return result


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A raw HTTP session, for what the SDK hides (SSE framing, malformed bodies, admin endpoints)."""
    async with aiohttp.ClientSession() as session:
        yield session
