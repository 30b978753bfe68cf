"""Starting and stopping simulators: no leaked threads or descriptors, clean exits even after errors."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from typing import Any

import anthropic
import httpx2
import pytest
from sim_support import MODEL, user

from claude_force_nb.sim import Fault, Simulator, serve


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except FileNotFoundError:  # not Linux: the thread check still runs
        return None


async def test_many_simulators_leak_no_threads_or_sockets() -> None:
    """Ten start/use/stop cycles leave the thread count and the open descriptors where they were."""

    async def cycle(seed: int) -> None:
        with serve(seed=seed) as sim:
            async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as client:
                await client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
                async with client.messages.stream(model=MODEL, max_tokens=5, messages=user("y")) as stream:
                    await stream.get_final_message()

    await cycle(0)  # warm-up: the SDK starts the test loop's executor thread on first use, which is not ours
    gc.collect()
    threads_before, fds_before = threading.active_count(), _open_fds()
    for i in range(10):
        await cycle(i)
    gc.collect()
    assert threading.active_count() == threads_before
    if fds_before is not None:
        assert _open_fds() == fds_before


def test_serve_stops_the_server_when_the_body_raises() -> None:
    """Leaving the `with` block through an exception still stops the server and joins its thread."""
    threads_before = threading.active_count()
    handle = serve()
    with pytest.raises(KeyError), handle:
        raise KeyError("boom")
    assert threading.active_count() == threads_before
    with pytest.raises(RuntimeError, match="not running"):
        handle.stats()


def test_start_and_close_are_idempotent() -> None:
    """start() twice serves once; close() twice is harmless; a closed handle can start again."""
    sim = Simulator(seed=1)
    try:
        first_url = sim.start().base_url
        assert sim.start().base_url == first_url
    finally:
        sim.close()
        sim.close()
    with sim:
        assert sim.base_url.startswith("http://127.0.0.1:")


async def test_stop_with_a_slow_stream_in_flight_is_prompt(make_client: Any) -> None:
    """A stream paced at a second per token does not hold up close(); the client sees the stream break."""
    sim = serve(per_token_s=1.0).start()
    try:
        client = make_client(sim)

        async def consume() -> None:
            async with client.messages.stream(model=MODEL, max_tokens=100, messages=user("x")) as stream:
                await stream.get_final_message()

        pending = asyncio.ensure_future(consume())
        for _ in range(200):
            if sim.stats()["in_flight"] == 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    finally:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sim.close()
        elapsed = loop.time() - start
    assert elapsed < 5.0  # generous, yet far below the stream's 100 s and the server's 10 s stop timeout
    # This SDK wraps a connection lost before the response as APIConnectionError, but lets a stream broken
    # midway surface as the transport's own RemoteProtocolError.
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        await pending


async def test_script_is_safe_from_another_thread_while_serving(
    sim: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    """script/stats/reset from a worker thread during traffic neither crash nor lose counts."""
    stop = threading.Event()

    def poke() -> None:
        while not stop.is_set():
            sim.stats()
            _ = sim.requests

    worker = threading.Thread(target=poke)
    worker.start()
    try:
        sim.script(Fault("overloaded"), times=5, match="hit")
        results = await asyncio.gather(
            *(
                client.messages.create(
                    model=MODEL, max_tokens=3, messages=user(f"{'hit' if i % 4 == 0 else 'miss'}{i}")
                )
                for i in range(40)
            ),
            return_exceptions=True,
        )
    finally:
        stop.set()
        worker.join()
    failures = [r for r in results if isinstance(r, anthropic.InternalServerError)]
    assert len(failures) == 5
    assert sim.stats()["by_status"] == {200: 35, 529: 5}


def test_a_shared_clock_needs_the_in_thread_simulator() -> None:
    """`clock=` drives the in-thread simulator's rate limits; a subprocess cannot share it, and says so."""
    with pytest.raises(ValueError, match="clock= needs the in-thread simulator"):
        Simulator(process=True, clock=lambda: 0.0)
