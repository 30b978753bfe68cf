"""`python -m claude_force_nb.sim`: run the simulator in the foreground until Ctrl-C or SIGTERM.

The first line on stdout is the base URL, flushed at once, so a parent process can start the server on port 0
and read which port it got. Everything else (hints, errors) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ._config import SimConfig, merge_options
from ._server import SimServer

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m claude_force_nb.sim",
        description="A local, simulated Anthropic Messages API on loopback, for tests, benchmarks and demos.",
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind; 0 picks a free one (default 0)")
    p.add_argument("--seed", type=int, help="seed for answers and random faults (default 0)")
    p.add_argument("--ttft", type=float, dest="ttft_s", metavar="S", help="seconds to the first token")
    p.add_argument(
        "--per-token", type=float, dest="per_token_s", metavar="S", help="seconds per output token"
    )
    p.add_argument("--min-output-tokens", type=int, help="shortest natural answer, in tokens")
    p.add_argument("--max-output-tokens", type=int, help="longest natural answer, in tokens")
    p.add_argument("--api-key", help="the only accepted x-api-key (default: any non-empty key)")
    p.add_argument("--model", action="append", dest="models", metavar="ID", help="accepted model id (repeat)")
    p.add_argument(
        "--retired-model", action="append", dest="retired_models", metavar="ID", help="answer 404 (repeat)"
    )
    p.add_argument("--rpm", type=int, dest="requests_per_minute", help="requests per minute limit")
    p.add_argument(
        "--count-rpm", type=int, dest="count_tokens_per_minute", help="count_tokens requests per minute"
    )
    p.add_argument("--itpm", type=int, dest="input_tokens_per_minute", help="input tokens per minute limit")
    p.add_argument("--otpm", type=int, dest="output_tokens_per_minute", help="output tokens per minute limit")
    p.add_argument(
        "--burst",
        type=float,
        dest="rate_limit_burst_s",
        metavar="S",
        help="seconds' worth a limit lets at once",
    )
    p.add_argument(
        "--fault",
        action="append",
        dest="faults",
        metavar="KIND=P",
        help="random fault rate, e.g. overloaded=0.1",
    )
    p.add_argument("--hang", type=float, dest="hang_s", metavar="S", help="how long a 'hang' fault lasts")
    p.add_argument(
        "--no-retry-after-ms", action="store_true", help="send only the integer retry-after header"
    )
    p.add_argument("--min-cache-tokens", type=int, help="smallest cacheable prompt prefix, in tokens")
    p.add_argument(
        "--cache-ttl-5m", type=float, dest="cache_ttl_5m_s", metavar="S", help="the '5m' TTL, seconds"
    )
    p.add_argument(
        "--cache-ttl-1h", type=float, dest="cache_ttl_1h_s", metavar="S", help="the '1h' TTL, seconds"
    )
    p.add_argument(
        "--batch-speed",
        type=float,
        dest="batch_items_per_s",
        metavar="N",
        help="batch items processed per second",
    )
    p.add_argument("--batch-error-rate", type=float, metavar="P", help="probability a batch item errors")
    p.add_argument(
        "--batch-expiry", type=float, dest="batch_expiry_s", metavar="S", help="batch expiry, seconds"
    )
    p.add_argument("--batch-max-requests", type=int, metavar="N", help="most requests in one batch")
    p.add_argument("--batch-max-bytes", type=int, metavar="N", help="largest batch body, in bytes")
    p.add_argument(
        "--config-json", metavar="JSON", help="a full SimConfig as JSON; the flags above override it"
    )
    p.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (parent gone)")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The SimConfig an argument namespace describes; raises ValueError for bad values."""
    base = _config_from_json(args.config_json) if args.config_json else None
    options: dict[str, Any] = {}
    for name in (
        "host",
        "port",
        "seed",
        "ttft_s",
        "per_token_s",
        "min_output_tokens",
        "max_output_tokens",
        "api_key",
        "models",
        "retired_models",
        "requests_per_minute",
        "count_tokens_per_minute",
        "input_tokens_per_minute",
        "output_tokens_per_minute",
        "rate_limit_burst_s",
        "hang_s",
        "min_cache_tokens",
        "cache_ttl_5m_s",
        "cache_ttl_1h_s",
        "batch_items_per_s",
        "batch_error_rate",
        "batch_expiry_s",
        "batch_max_requests",
        "batch_max_bytes",
    ):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.faults:
        rates: dict[str, float] = {}
        for item in args.faults:
            kind, sep, prob = item.partition("=")
            try:
                if not sep:
                    raise ValueError
                rates[kind] = float(prob)
            except ValueError:
                raise ValueError(f"--fault expects KIND=PROBABILITY, got {item!r}") from None
        options["fault_rates"] = rates
    if args.no_retry_after_ms:
        options["retry_after_ms"] = False
    return merge_options(base, options)


def _config_from_json(text: str) -> SimConfig:
    """--config-json: a JSON object of SimConfig fields (ValueError saying what is wrong otherwise)."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("--config-json is nested too deeply: give one object of SimConfig fields") from None
    except ValueError as exc:
        raise ValueError(f"--config-json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ValueError(f"--config-json must be a JSON object of SimConfig fields, got a {kind}")
    return SimConfig.from_dict(data)


async def _run(config: SimConfig, *, exit_on_stdin_eof: bool) -> None:
    server = SimServer(config)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows has no loop signal handlers; Ctrl-C then arrives as KeyboardInterrupt, handled in main().
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            # os.read on the raw descriptor, not sys.stdin: a daemon thread blocked inside a buffered reader
            # holds its lock, which can abort the interpreter at shutdown.
            with contextlib.suppress(OSError):
                while os.read(0, 4096):
                    pass
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    print(server.base_url, flush=True)
    print("claude_force_nb.sim: simulated Messages API running; Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_run(config, exit_on_stdin_eof=args.exit_on_stdin_eof))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"claude_force_nb.sim: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
