"""Simulator and serve(): run the server beside the caller, in a thread or in a subprocess, behind one handle.

Thread mode gives the server its own event loop in a daemon thread, so a test's loop (or a notebook kernel's)
never has to host it, and the handle talks to the shared state directly (it is lock-protected). Process mode
runs `python -m claude_force_nb.sim` and talks to its admin endpoints instead: benchmarks use it so the server
does not compete with the load generator for one GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ._config import SimConfig, _check_seconds, merge_options
from ._faults import Fault
from ._server import SimServer
from ._state import SimState

__all__ = ["DEFAULT_STARTUP_TIMEOUT_S", "Simulator", "serve"]

DEFAULT_STARTUP_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_ADMIN_TIMEOUT_S = 10.0


class _ThreadBackend:
    def __init__(
        self, config: SimConfig, startup_timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.state = SimState(config, clock)
        self._server = SimServer(config, self.state)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        # Filled by the server thread; a list so the type checker does not assume it stays empty.
        self._errors: list[BaseException] = []
        self.base_url = ""
        self._thread = threading.Thread(target=self._run, name="claude-force-nb-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(startup_timeout_s):
            self.close()
            raise RuntimeError(f"the simulator did not start within {startup_timeout_s} s")
        if self._errors:
            self._thread.join(_STOP_TIMEOUT_S)
            error = self._errors[0]
            raise RuntimeError(
                f"could not start the simulator on {config.host}:{config.port}: {error}"
            ) from error

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _main(self) -> None:
        try:
            self.base_url = await self._server.start()
        except BaseException as exc:
            self._errors.append(exc)
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._server.stop()

    def close(self) -> None:
        if self._thread.is_alive():
            # RuntimeError: the loop already closed, so the thread is on its way out anyway.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(_STOP_TIMEOUT_S)

    def script(self, fault: Fault, times: int, match: str | None) -> None:
        self.state.script(fault, times, match)

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests()

    def reset(self) -> None:
        self.state.reset()


class _ProcessBackend:
    def __init__(self, config: SimConfig, startup_timeout_s: float) -> None:
        # The child must import this very package even when it is only on the parent's sys.path.
        src_dir = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src_dir, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "claude_force_nb.sim", "--config-json", json.dumps(config.to_dict())]
        cmd.append("--exit-on-stdin-eof")  # an orphaned child (parent killed) notices and exits
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives until close()
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        # Urllib would route loopback through an HTTP(S)_PROXY from the environment; never do that.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        line = self._first_line(startup_timeout_s)
        if not line.startswith("http://"):
            detail = self._failure_detail()
            self.close()
            raise RuntimeError(f"the simulator subprocess failed to start: {detail}")
        self.base_url = line

    def _first_line(self, timeout_s: float) -> str:
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if reader.is_alive():
            self._proc.kill()
            reader.join()
            return f"(no base URL within {timeout_s} s)"
        return lines[0].decode(errors="replace").strip() if lines else ""

    def _failure_detail(self) -> str:
        try:
            code = self._proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.seek(0)
        tail = self._stderr.read()[-4000:].decode(errors="replace").strip()
        return f"exit code {code}; stderr:\n{tail}" if tail else f"exit code {code}"

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()

    def _call(self, method: str, path: str, payload: object = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=_ADMIN_TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                body = exc.read().decode(errors="replace")
            try:
                message = json.loads(body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = body
            raise ValueError(message) from None

    def script(self, fault: Fault, times: int, match: str | None) -> None:
        if not isinstance(fault, Fault):
            raise ValueError(f"script() needs a Fault, got {type(fault).__name__}")
        self._call("POST", "/_sim/script", {"fault": fault.to_dict(), "times": times, "match": match})

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._call("GET", "/_sim/stats")
        # JSON object keys are strings; give back the int status codes thread mode gives.
        stats["by_status"] = {int(code): n for code, n in stats["by_status"].items()}
        return stats

    def requests(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self._call("GET", "/_sim/requests")
        return records

    def reset(self) -> None:
        self._call("POST", "/_sim/reset")


class Simulator:
    """A running (once started) simulated Messages API; use as a context manager, or start() and close()."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        process: bool = False,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> None:
        self.config = merge_options(config, options)
        self.process = bool(process)
        if clock is not None and self.process:
            raise ValueError("clock= needs the in-thread simulator: a subprocess cannot share a clock")
        self._clock = clock
        self._startup_timeout_s = _check_seconds("startup_timeout_s", startup_timeout_s)
        if not self._startup_timeout_s:
            raise ValueError("startup_timeout_s must be > 0, got 0")
        self._backend: _ThreadBackend | _ProcessBackend | None = None

    def __repr__(self) -> str:
        where = self._backend.base_url if self._backend is not None else "not started"
        mode = "process" if self.process else "thread"
        return f"<Simulator {where} ({mode})>"

    def start(self) -> Simulator:
        """Start serving (idempotent); raises RuntimeError when the server cannot start."""
        if self._backend is None:
            if self.process:
                self._backend = _ProcessBackend(self.config, self._startup_timeout_s)
            else:
                self._backend = _ThreadBackend(
                    self.config, self._startup_timeout_s, self._clock or time.monotonic
                )
        return self

    def close(self) -> None:
        """Stop the server and release its thread or subprocess (idempotent)."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _running(self) -> _ThreadBackend | _ProcessBackend:
        if self._backend is None:
            raise RuntimeError("the simulator is not running; use `with serve(...) as sim:` or sim.start()")
        return self._backend

    @property
    def base_url(self) -> str:
        """The URL to give the SDK: AsyncAnthropic(base_url=sim.base_url, ...)."""
        return self._running().base_url

    def script(self, fault: Fault, times: int = 1, match: str | None = None) -> None:
        """Queue `fault` for the next `times` /v1/messages requests whose raw body contains `match`."""
        self._running().script(fault, times, match)

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset():

        requests (to /v1/messages, faulted and invalid ones included), count_tokens (and count_tokens_limited:
        its 429s), streamed (streams begun),
        by_status {int status: n}, faults {kind: n}, rate_limited (429s from configured limits), disconnects
        (connections that ended before the answer: client gone, reset fault, stop), input_tokens and
        output_tokens (billed, from answered requests), cache_reads / cache_writes (requests that read / wrote
        the prompt cache) with cache_read_tokens / cache_write_tokens, in_flight, peak_in_flight,
        scripted_pending (scripted faults not yet used) and cache_entries.
        """
        return self._running().stats()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The most recent requests (config.record_limit of them), oldest first, secrets removed."""
        return self._running().requests()

    def reset(self) -> None:
        """Clear stats, scripted faults, recorded requests, prompt cache and rate-limit windows."""
        self._running().reset()


def serve(
    config: SimConfig | None = None,
    *,
    process: bool = False,
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
    clock: Callable[[], float] | None = None,
    **options: Any,
) -> Simulator:
    """A Simulator that starts on `with` entry and stops on exit: `with serve(ttft_s=0.01) as sim: ...`.

    `options` are SimConfig fields and override `config`; bad values raise ValueError here, before anything
    starts. `clock` (in-thread only) replaces `time.monotonic` for the rate limits and the prompt cache's
    TTLs: a test can share a virtual clock with the client's rate limiter, so paced waits take no real time.
    """
    return Simulator(config, process=process, startup_timeout_s=startup_timeout_s, clock=clock, **options)
