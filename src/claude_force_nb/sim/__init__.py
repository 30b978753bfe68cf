"""A local Anthropic Messages-API simulator: a real HTTP server on loopback that the real SDK can talk to.

    from claude_force_nb.sim import Fault, serve

    with serve(ttft_s=0.01, per_token_s=0.001) as sim:
        client = anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="sim", max_retries=0)
        sim.script(Fault("rate_limit", retry_after=0.05), times=2)   # the next two requests get a 429
        ...
        sim.stats()["by_status"]                                     # {429: 2, 200: 1}

What it speaks: POST /v1/messages (JSON and SSE streaming, with the real event sequence), POST
/v1/messages/count_tokens, the Message Batches endpoints under /v1/messages/batches (create, retrieve, list
with after_id/before_id/limit, cancel, delete, JSONL results; see `_batches.py`), and admin endpoints
under /_sim/ (health, stats, requests, config, script, reset).
Answers are deterministic for a request and seed, and open with "[simulated <model>]" so they can never be
mistaken for real output. Token counts follow `estimate_tokens` (ceil(len/4)); `count_input_tokens`
documents the full input formula. Prompt caching, rate limits and faults behave like the real service's.

SimConfig fields (all keyword-only, also accepted as `serve(**options)`):
    host, port             where to listen; port 0 (the default) picks a free port
    seed                   seeds answers and random faults, so runs are reproducible in arrival order
    ttft_s, per_token_s    latency: time to first token, time per output token (asyncio sleeps)
    min_output_tokens, max_output_tokens
                           the range of natural answer lengths (max_tokens and stop sequences cut them)
    api_key                when set, the only key accepted; otherwise any non-empty key is (missing is 401)
    models                 None accepts any model id; a set restricts (others get 404)
    retired_models         model ids answered 404 not_found_error (dated ids of them too), as the API
                           answers a retired model
    requests_per_minute, input_tokens_per_minute, output_tokens_per_minute
                           token-bucket rate limits (None = unlimited), with anthropic-ratelimit-* headers,
                           enforced over short intervals as the API's are
    rate_limit_burst_s     how many seconds' worth of each limit may go at once (default 1; 60 = a bucket
                           holding a whole minute)
    count_tokens_per_minute
                           count_tokens' own requests-per-minute limit (429 with retry-after beyond it)
    fault_rates            {kind: probability} of random faults, e.g. {"overloaded": 0.05}
    hang_s                 how long a "hang" fault sends nothing
    retry_after_ms         also send the precise retry-after-ms header on 429/529
    min_cache_tokens       smallest cacheable prefix: an int, or {model-prefix: int}
    cache_ttl_5m_s, cache_ttl_1h_s
                           what the "5m" and "1h" cache TTLs last (shorten them in tests)
    record_limit           how many recent requests `Simulator.requests` keeps
    stream_chunk_tokens    tokens per text_delta event when streaming
    batch_items_per_s      how fast a batch's requests are processed, counted from its creation (0 = never)
    batch_error_rate       probability that a batch item ends `errored` (a retryable overloaded_error)
    batch_expiry_s         when an unfinished batch expires (24 h, as the real service)
    batch_max_requests, batch_max_bytes
                           a batch's size limits (100,000 requests, 256 MB); set them small to test splitting

Run it by hand with `python -m claude_force_nb.sim --port 8765`; see `--help`.
This package never imports the anthropic SDK: the server only needs JSON.
"""

from ._config import SimConfig
from ._faults import FAULT_KINDS, Fault
from ._handle import Simulator, serve
from ._tokens import MESSAGE_OVERHEAD_TOKENS, count_input_tokens, estimate_tokens

__all__ = [
    "FAULT_KINDS",
    "MESSAGE_OVERHEAD_TOKENS",
    "Fault",
    "SimConfig",
    "Simulator",
    "count_input_tokens",
    "estimate_tokens",
    "serve",
]
