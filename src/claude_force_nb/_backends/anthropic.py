"""The real backend: the `anthropic` SDK's `AsyncAnthropic`, with its own retries switched off.

`max_retries=0` because retries belong to the orchestrator (one layer, so attempt counts are true and
retries never multiply). Every SDK or transport exception is translated here into the package's exception
tree with `raise ... from exc`; nothing from `anthropic` or `httpx2` escapes this module.

The SDK takes about a second to import, so it is imported when the first client is built, not before.
"""

from __future__ import annotations

import asyncio
import time
import warnings
import weakref
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from .._exceptions import (
    APICallError,
    AttemptTimeoutError,
    BackendError,
    ClaudeForceWarning,
    ConnectionFailedError,
    MalformedResponseError,
)
from .._request import Completion, MessageRequest, RateLimitSnapshot, Usage
from .._retry import parse_retry_after
from . import TextCallback, being_cancelled

if TYPE_CHECKING:
    import anthropic

__all__ = ["AnthropicBackend", "count_tokens_kwargs", "parse_rate_limit_headers"]

Transport = Literal["aiohttp", "httpx"]
_RATE_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")
_KEEPALIVE_FLOOR = 100
_SDK_DEPRECATION = r"The model '[^']*' is deprecated and will reach end-of-life"


def parse_rate_limit_headers(headers: Mapping[str, str], *, now: float) -> RateLimitSnapshot | None:
    """The `anthropic-ratelimit-<kind>-{limit,remaining,reset}` headers of a response, or None if absent."""
    # One pass over the headers: httpx's case-insensitive `get` scans them all on every lookup.
    found = {k.lower(): v for k, v in headers.items() if k[:20].lower() == "anthropic-ratelimit-"}
    if not found:
        return None
    headers = found
    remaining: dict[str, int] = {}
    limit: dict[str, int] = {}
    reset_in: dict[str, float] = {}
    for kind in _RATE_KINDS:
        prefix = f"anthropic-ratelimit-{kind}-"
        raw_remaining = headers.get(prefix + "remaining")
        if raw_remaining is None:
            continue
        try:
            remaining[kind] = int(raw_remaining)
            limit[kind] = int(headers.get(prefix + "limit") or 0)
        except ValueError:
            continue
        raw_reset = headers.get(prefix + "reset")
        if raw_reset:
            try:
                stamp = datetime.fromisoformat(raw_reset.replace("Z", "+00:00"))
            except ValueError:
                continue
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=timezone.utc)
            reset_in[kind] = max(stamp.timestamp() - now, 0.0)
    if not remaining:
        return None
    return RateLimitSnapshot(remaining=remaining, limit=limit, reset_in_s=reset_in)


def _from_json(
    body: object, headers: Mapping[str, str], request_id: str | None, *, ttft_s: float | None = None
) -> Completion:
    """A Completion from a Messages API JSON body; MalformedResponseError if it is not one."""
    try:
        if not isinstance(body, dict):
            raise TypeError(f"expected a JSON object, got {type(body).__name__}")
        content = body["content"]
        text = "".join(block["text"] for block in content if block.get("type") == "text")
        usage = body["usage"]
        creation = usage.get("cache_creation") or {}
        parsed = Usage(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
            cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
            cache_creation_1h_input_tokens=int(creation.get("ephemeral_1h_input_tokens") or 0),
        )
        return Completion(
            text=text,
            model=str(body["model"]),
            stop_reason=body.get("stop_reason"),
            stop_sequence=body.get("stop_sequence"),
            usage=parsed,
            message_id=body.get("id"),
            request_id=request_id,
            ttft_s=ttft_s,
            rate_limits=parse_rate_limit_headers(headers, now=time.time()),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedResponseError(f"the API's answer is not a Messages response: {exc!r}") from exc


_closing: set[asyncio.Task[None]] = set()


def _close_soon(client: Any) -> None:
    """Close an abandoned SDK client on the running loop (no loop: the process is ending; nothing to do)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(client.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _http_client(transport: Transport, limits: Any) -> Any:
    """The SDK's HTTP client: its aiohttp transport when available, else (with a warning) its httpx one."""
    import anthropic

    if transport == "aiohttp":
        try:
            return anthropic.DefaultAioHttpClient(limits=limits)
        except RuntimeError:  # the SDK could not import its aiohttp transport: aiohttp missing or too old
            warnings.warn(
                "the anthropic SDK's aiohttp transport is unavailable (aiohttp is missing or too old), so "
                "calls go through its httpx transport at about half the calls per second; reinstall "
                "claude-force-nb (it depends on anthropic[aiohttp]) to get it back, or pass "
                "transport='httpx' to choose httpx on purpose",
                ClaudeForceWarning,
                stacklevel=4,
            )
    return anthropic.DefaultAsyncHttpxClient(limits=limits)


def _usage(raw: Any, previous: Usage | None = None) -> Usage:
    """Our Usage from an SDK usage object (message or delta); missing fields keep `previous`' values."""
    base = previous or Usage()

    def field(name: str, default: int) -> int:
        value = getattr(raw, name, None)
        return default if value is None else int(value)

    creation = getattr(raw, "cache_creation", None)
    one_hour = getattr(creation, "ephemeral_1h_input_tokens", None) if creation is not None else None
    return Usage(
        input_tokens=field("input_tokens", base.input_tokens),
        output_tokens=field("output_tokens", base.output_tokens),
        cache_creation_input_tokens=field("cache_creation_input_tokens", base.cache_creation_input_tokens),
        cache_read_input_tokens=field("cache_read_input_tokens", base.cache_read_input_tokens),
        cache_creation_1h_input_tokens=base.cache_creation_1h_input_tokens
        if one_hour is None
        else int(one_hour),
    )


class AnthropicBackend:
    """One attempt per `complete()` call through `anthropic.AsyncAnthropic`.

    `client` lets tests or advanced users supply a ready `AsyncAnthropic` (it should have `max_retries=0`);
    `http_client` an `httpx2.AsyncClient` (to script transport faults). `max_connections` sizes the pool's
    keep-alive so a high concurrency limit does not reconnect on every call.

    `transport="aiohttp"` (the default) uses the SDK's own aiohttp transport (`DefaultAioHttpClient`),
    which measured about twice the calls per second of the default httpx transport on the same machine
    (benchmarks/bench_orchestrator.py prints both); `"httpx"` is the SDK's default, kept as a fallback.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        client: anthropic.AsyncAnthropic | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_connections: int = _KEEPALIVE_FLOOR,
        timeout_s: float | None = None,
        transport: Transport = "aiohttp",
        open_telemetry: bool = False,
    ) -> None:
        if transport not in ("aiohttp", "httpx"):
            raise ValueError(f"transport must be 'aiohttp' or 'httpx', got {transport!r}")
        self._transport: Transport = transport
        self._open_telemetry = open_telemetry
        self._api_key = api_key
        self._base_url = base_url
        self._http_client = http_client
        self._client: anthropic.AsyncAnthropic | None = client
        self._owns_client = client is None
        self._default_headers = dict(default_headers or {})
        self._max_connections = max(max_connections, 1)
        self._timeout_s = timeout_s
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def base_url(self) -> str | None:
        return self._base_url

    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client, built on first use."""
        if self._client is None:
            import anthropic
            import httpx2

            http_client = self._http_client
            if http_client is None:
                keepalive = max(self._max_connections, _KEEPALIVE_FLOOR)
                limits = httpx2.Limits(
                    max_connections=max(keepalive, 1000), max_keepalive_connections=keepalive
                )
                http_client = _http_client(self._transport, limits)
            timeout: Any = anthropic.NOT_GIVEN
            if self._timeout_s is not None:
                # A backstop only: the orchestrator enforces the per-attempt deadline itself, across the whole
                # attempt (a stream included), which httpx's per-read timeout cannot do.
                timeout = httpx2.Timeout(self._timeout_s + 5.0, connect=min(self._timeout_s, 10.0))
            client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self._base_url,
                max_retries=0,
                http_client=http_client,
                default_headers=self._default_headers or None,
                timeout=timeout,
                # The run log already records every attempt; the SDK's OpenTelemetry spans cost about 10% of
                # a zero-latency call (measured: 1,890 vs 2,090 calls/s). open_telemetry=True restores them.
                open_telemetry=None if self._open_telemetry else False,
            )
            self._client = client
            # The SDK warns (DeprecationWarning, pointing into this module) on every call to a model in its
            # own deprecation table. The orchestrator already says it once per session, in one readable
            # line with the replacement, from the rate card; the SDK's copy is noise, so it is filtered.
            warnings.filterwarnings("ignore", message=_SDK_DEPRECATION, category=DeprecationWarning)
            # An orchestrator dropped without `aclose()` (common in notebooks) would leave its connection
            # pool to the garbage collector, which warns "Unclosed connector": close it on the running loop.
            self._finalizer = weakref.finalize(self, _close_soon, client) if self._owns_client else None
        return self._client

    async def aclose(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._client is not None and self._owns_client:
            await self._client.close()
        self._client = None

    async def count_tokens(self, request: MessageRequest) -> int:
        """The request's input tokens by the Messages API's free `count_tokens` endpoint (one attempt)."""
        client = self.client()
        try:
            raw = await client.messages.with_raw_response.count_tokens(**count_tokens_kwargs(request))
            body = await raw.json()
        except Exception as exc:
            raise _translate(exc) from exc
        tokens = body.get("input_tokens") if isinstance(body, dict) else None
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise MalformedResponseError(f"count_tokens answered without input_tokens: {body!r:.200}")
        return tokens

    async def complete(self, request: MessageRequest, *, on_text: TextCallback | None = None) -> Completion:
        client = self.client()
        kwargs = request.to_api_kwargs()
        started = time.perf_counter()
        try:
            if on_text is None:
                raw = await client.messages.with_raw_response.create(**kwargs)
                # The response's headers are in: the API's time to first byte. A non-streamed answer is
                # written only once it is complete, so this is close to the whole call's latency.
                first_byte_s = time.perf_counter() - started
                # The SDK made the call (auth, headers, error statuses); we read its JSON body ourselves.
                # Building the SDK's pydantic Message for every answer was the largest single cost of a
                # call on the client (see benchmarks/bench_orchestrator.py), and we keep none of it.
                body = await raw.json()
                return _from_json(body, raw.headers, raw.request_id, ttft_s=first_byte_s)
            raw_stream = await client.messages.with_raw_response.create(**kwargs, stream=True)
            events = await raw_stream.parse()
            return await self._consume_stream(
                events, raw_stream.headers, raw_stream.request_id, request, on_text, started
            )
        except BackendError:
            raise
        except Exception as exc:
            raise _translate(exc) from exc

    async def _consume_stream(
        self,
        events: Any,
        headers: Mapping[str, str],
        request_id: str | None,
        request: MessageRequest,
        on_text: TextCallback,
        started: float,
    ) -> Completion:
        parts: list[str] = []
        usage = Usage()
        model = request.model
        message_id: str | None = None
        stop_reason: str | None = None
        stop_sequence: str | None = None
        ttft: float | None = None
        complete = False
        async for event in events:
            kind = event.type
            if kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta" and delta.text:
                    if ttft is None:
                        ttft = time.perf_counter() - started
                    parts.append(delta.text)
                    on_text(delta.text)
            elif kind == "message_start":
                usage = _usage(event.message.usage)
                model = event.message.model
                message_id = event.message.id
            elif kind == "message_delta":
                usage = _usage(event.usage, usage)
                stop_reason = event.delta.stop_reason
                stop_sequence = event.delta.stop_sequence
            elif kind == "message_stop":
                complete = True
        if not complete:
            if being_cancelled():
                # The stream ended because this call is being cancelled (the panel's Cancel, an interrupt)
                # and the transport absorbed the CancelledError: a cancellation, not a connection failure.
                raise asyncio.CancelledError
            raise ConnectionFailedError("the stream ended before message_stop", request_id=request_id)
        return Completion(
            text="".join(parts),
            model=model,
            stop_reason=stop_reason,
            stop_sequence=stop_sequence,
            usage=usage,
            message_id=message_id,
            request_id=request_id,
            ttft_s=ttft,
            rate_limits=parse_rate_limit_headers(headers, now=time.time()),
        )


_NOT_COUNTED = ("max_tokens", "stop_sequences", "metadata", "extra_body")


def count_tokens_kwargs(request: MessageRequest) -> dict[str, Any]:
    """`client.messages.count_tokens` arguments: the request's prompt side (the endpoint takes no output
    limits or sampling options)."""
    return {k: v for k, v in request.to_api_kwargs().items() if k not in _NOT_COUNTED}


def _translate(exc: Exception) -> BackendError:
    """Map an SDK or transport exception onto the package's tree (the caller chains the original)."""
    import anthropic
    import httpx2

    if isinstance(exc, anthropic.APIStatusError):
        headers = exc.response.headers
        error_type = exc.type if isinstance(exc.type, str) else None
        status: int | None = exc.status_code
        if status is not None and status < 400:
            status = None  # an error event inside a 200 stream: the event's type decides
        should = headers.get("x-should-retry")
        return APICallError(
            f"{status or 'stream'} {error_type or 'error'}: {exc.api_message or exc.message}",
            status=status,
            error_type=error_type,
            should_retry=True if should == "true" else False if should == "false" else None,
            retry_after=parse_retry_after(headers, now=time.time()),
            request_id=exc.request_id,
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return AttemptTimeoutError("the request timed out at the HTTP layer")
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return ConnectionFailedError(f"connection failed: {exc}{_root_cause(exc)}")
    if isinstance(exc, (anthropic.APIResponseValidationError, ValueError)):
        return MalformedResponseError(f"could not parse the API's answer: {exc}")
    return BackendError(f"unexpected error from the SDK: {type(exc).__name__}: {exc}")


def _root_cause(exc: BaseException) -> str:
    """ " (Type: message)" of the error at the bottom of `exc`'s chain, or "" if there is none: the SDK's
    "Connection error." alone does not say whether the host refused, the name did not resolve or the
    connection belonged to another event loop."""
    seen = {id(exc)}
    root: BaseException = exc
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        root = nxt
    if root is exc:
        return ""
    detail = " ".join(str(root).split())
    if len(detail) > 200:
        detail = detail[:199] + "…"
    return f" ({type(root).__name__}: {detail})" if detail else f" ({type(root).__name__})"
