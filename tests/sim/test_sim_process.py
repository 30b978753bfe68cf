"""Process mode and the `python -m claude_force_nb.sim` command line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from sim_support import MODEL, user

from claude_force_nb.sim import Fault, Simulator, serve


@pytest.fixture(scope="module")
def process_sim() -> Iterator[Simulator]:
    """One subprocess simulator for this module (starting Python costs a few hundred milliseconds)."""
    with serve(process=True, seed=3, min_output_tokens=10, max_output_tokens=20) as sim:
        yield sim


def _get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        return json.loads(resp.read())


async def test_process_mode_serves_the_sdk(process_sim: Simulator, make_client: Any) -> None:
    """A subprocess simulator answers the SDK and runs in another process."""
    process_sim.reset()
    message = await make_client(process_sim).messages.create(model=MODEL, max_tokens=100, messages=user("hi"))
    assert message.content[0].text.startswith(f"[simulated {MODEL}]")  # type: ignore[union-attr]
    health = _get_json(f"{process_sim.base_url}/_sim/health")
    assert health["pid"] != os.getpid()
    assert "process" in repr(process_sim)


async def test_process_mode_is_controlled_over_admin_endpoints(
    process_sim: Simulator, make_client: Any
) -> None:
    """script, stats, requests and reset work through the handle exactly as in thread mode."""
    process_sim.reset()
    client = make_client(process_sim)
    process_sim.script(Fault("overloaded", retry_after=0.5), times=1, match="boom")
    with pytest.raises(anthropic.InternalServerError) as info:
        await client.messages.create(model=MODEL, max_tokens=5, messages=user("boom"))
    assert info.value.response.headers["retry-after-ms"] == "500"
    await client.messages.create(model=MODEL, max_tokens=5, messages=user("fine"))
    stats = process_sim.stats()
    assert stats["by_status"] == {200: 1, 529: 1}
    assert stats["faults"] == {"overloaded": 1}
    assert [r["status"] for r in process_sim.requests] == [529, 200]
    with pytest.raises(ValueError, match="times"):
        process_sim.script(Fault("overloaded"), times=0)
    process_sim.reset()
    assert process_sim.stats()["requests"] == 0


async def test_process_and_thread_mode_give_the_same_answer(process_sim: Simulator, make_client: Any) -> None:
    """The subprocess receives the whole config: same seed and lengths, same text as in a thread."""
    with serve(seed=3, min_output_tokens=10, max_output_tokens=20) as local:
        here = await make_client(local).messages.create(model=MODEL, max_tokens=100, messages=user("same"))
    there = await make_client(process_sim).messages.create(model=MODEL, max_tokens=100, messages=user("same"))
    assert here.content == there.content


def test_process_mode_reports_startup_failure() -> None:
    """A subprocess that cannot bind its port fails serve() with the child's error, not a hang."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="failed to start"), serve(process=True, port=port):
            pass


def test_thread_mode_reports_startup_failure() -> None:
    """A thread simulator that cannot bind its port raises a RuntimeError naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"could not start the simulator on 127.0.0.1:{port}"):
            serve(port=port).start()


def test_cli_prints_the_base_url_and_stops_on_sigterm() -> None:
    """`python -m claude_force_nb.sim --port 0` prints its URL first, serves, and exits 0 on SIGTERM."""
    cmd = [sys.executable, "-m", "claude_force_nb.sim", "--port", "0", "--seed", "5", "--rpm", "100"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().decode().strip()
            assert url.startswith("http://127.0.0.1:")
            assert _get_json(f"{url}/_sim/health")["status"] == "ok"
            config = _get_json(f"{url}/_sim/config")
            assert (config["seed"], config["requests_per_minute"]) == (5, 100)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()


def test_cli_rejects_bad_options() -> None:
    """Bad values exit with status 2 and a message naming the option."""
    cmd = [sys.executable, "-m", "claude_force_nb.sim", "--ttft", "-1"]
    done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    assert done.returncode == 2
    assert b"ttft_s" in done.stderr
    bad_fault = subprocess.run(
        [*cmd[:3], "--fault", "meteor=0.5"], capture_output=True, timeout=30, check=False
    )
    assert bad_fault.returncode == 2
    assert b"meteor" in bad_fault.stderr


def test_cli_builds_the_config_from_flags() -> None:
    """Every flag lands in the matching SimConfig field; --config-json is the base they override."""
    from claude_force_nb.sim.__main__ import _build_parser, config_from_args

    args = _build_parser().parse_args(
        [
            "--config-json",
            json.dumps({"seed": 1, "hang_s": 5.0}),
            "--seed",
            "2",
            "--ttft",
            "0.5",
            "--per-token",
            "0.01",
            "--model",
            "a",
            "--model",
            "b",
            "--fault",
            "overloaded=0.25",
            "--no-retry-after-ms",
            "--itpm",
            "1000",
            "--otpm",
            "500",
            "--cache-ttl-5m",
            "1",
        ]
    )
    config = config_from_args(args)
    assert (config.seed, config.hang_s, config.ttft_s, config.per_token_s) == (2, 5.0, 0.5, 0.01)
    assert config.models == frozenset({"a", "b"})
    assert dict(config.fault_rates) == {"overloaded": 0.25}
    assert config.retry_after_ms is False
    assert (config.input_tokens_per_minute, config.output_tokens_per_minute) == (1000, 500)
    assert config.cache_ttl_5m_s == 1.0
