"""Responder: turns an admitted, valid request into its answer, sent as one JSON body or as an SSE stream.

Both paths compute the same text and usage from the same request, so a client that streams sees exactly what
a client that does not would see; only the timing and the framing differ.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from ._cache import CachePlan
from ._config import SimConfig
from ._ratelimit import RateLimited
from ._state import SimState
from ._structured import json_template
from ._text import answer_key, cut_answer, last_user_line, natural_answer, structured_answer
from ._tokens import PromptTokens, analyze_prompt, estimate_tokens
from ._validate import MessagesRequest
from ._wire import (
    CONTENT_BLOCK_START,
    CONTENT_BLOCK_STOP,
    MESSAGE_STOP,
    PING,
    Usage,
    dumps,
    message_body,
    message_delta_event,
    message_start_event,
    new_id,
    stream_error_event,
    text_delta_event,
)

__all__ = ["Outcome", "Responder"]

_SSE_HEADERS: Final = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


class Outcome:
    """What happened to one request, filled in as it goes, so the server can record it even when cancelled."""

    __slots__ = ("_on_done", "disconnected", "status", "streamed", "usage")

    def __init__(self, on_done: Callable[[Outcome], None]) -> None:
        self._on_done: Callable[[Outcome], None] | None = on_done
        self.status: int | None = None
        self.usage: Usage | None = None
        self.streamed = False
        self.disconnected = False

    def done(self) -> None:
        """Record the outcome now; later calls do nothing.

        A stream calls this before writing its last bytes: a client that has the whole answer must also find
        it in the stats, or a test that checks stats right after a stream would race the server's bookkeeping.
        """
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(self)


class Responder:
    """Answers for one simulator: token accounting, cache and rate-limit admission, text, timing, framing."""

    def __init__(self, config: SimConfig, state: SimState) -> None:
        self._config = config
        self._state = state
        self._chunk_chars = 4 * config.stream_chunk_tokens

    @staticmethod
    def count(parsed: MessagesRequest) -> int:
        """The count_tokens answer: every input token, cached or not."""
        return analyze_prompt(parsed.tools, parsed.system, parsed.messages, parsed.cache_control).total

    def admit(
        self, api_key: str, parsed: MessagesRequest
    ) -> tuple[PromptTokens, CachePlan, RateLimited | None, dict[str, str]]:
        """Count the prompt, plan its cache use and pass the rate limits (see SimState.admit)."""
        prompt = analyze_prompt(parsed.tools, parsed.system, parsed.messages, parsed.cache_control)
        plan, refused, headers = self._state.admit(scope=api_key, model=parsed.model, prompt=prompt)
        return prompt, plan, refused, headers

    def _produce(
        self, parsed: MessagesRequest, prompt: PromptTokens, plan: CachePlan
    ) -> tuple[str, str, str | None, Usage]:
        config = self._config
        key = answer_key(
            model=parsed.model,
            system=parsed.system,
            messages=parsed.messages,
            temperature=parsed.temperature,
            has_cache_control=parsed.breakpoints > 0,
        )
        template = json_template(parsed.system, parsed.messages)
        if template is not None:
            full = structured_answer(template, key=key, seed=config.seed)
        else:
            full = natural_answer(
                model=parsed.model,
                quote=last_user_line(parsed.messages),
                key=key,
                seed=config.seed,
                min_tokens=config.min_output_tokens,
                max_tokens=config.max_output_tokens,
            )
        text, stop_reason, stop_sequence = cut_answer(
            full, max_tokens=parsed.max_tokens, stop_sequences=parsed.stop_sequences
        )
        # Like the real API, a produced answer costs at least one token; max_tokens=0 (cache pre-warming)
        # produces nothing and costs nothing.
        output_tokens = max(1, estimate_tokens(text)) if parsed.max_tokens else 0
        usage = Usage(
            input_tokens=prompt.total - plan.read_tokens - plan.write_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=plan.read_tokens,
            cache_write_5m_tokens=plan.write_5m_tokens,
            cache_write_1h_tokens=plan.write_1h_tokens,
        )
        return text, stop_reason, stop_sequence, usage

    def batch_message(self, scope: str, parsed: MessagesRequest) -> dict[str, Any]:
        """One succeeded batch item's Message, made as /v1/messages would make it, at once (no latency) and
        with the batch path's own prompt cache (a prefix cached by ordinary calls is not read by a batch)."""
        prompt = analyze_prompt(parsed.tools, parsed.system, parsed.messages, parsed.cache_control)
        plan = self._state.batch_cache_plan(scope=scope, model=parsed.model, prompt=prompt)
        body, usage = self._message(parsed, prompt, plan)
        self._state.count_batch_usage(usage)
        return body

    def _message(
        self, parsed: MessagesRequest, prompt: PromptTokens, plan: CachePlan
    ) -> tuple[dict[str, Any], Usage]:
        text, stop_reason, stop_sequence, usage = self._produce(parsed, prompt, plan)
        body = message_body(
            message_id=new_id("msg"),
            model=parsed.model,
            text=text if parsed.max_tokens else None,
            stop_reason=stop_reason,
            stop_sequence=stop_sequence,
            usage=usage,
        )
        return body, usage

    async def respond(
        self,
        request_id: str,
        parsed: MessagesRequest,
        prompt: PromptTokens,
        plan: CachePlan,
        limit_headers: dict[str, str],
        out: Outcome,
    ) -> web.Response:
        """The non-streaming answer, after ttft_s + per_token_s * output_tokens."""
        body, usage = self._message(parsed, prompt, plan)
        delay = self._config.ttft_s + self._config.per_token_s * usage.output_tokens
        if delay > 0:
            await asyncio.sleep(delay)
        headers = {"content-type": "application/json", "request-id": request_id, **limit_headers}
        out.status = 200
        out.usage = usage
        return web.Response(body=dumps(body).encode(), headers=headers)

    async def stream(
        self,
        request: web.Request,
        request_id: str,
        parsed: MessagesRequest,
        prompt: PromptTokens,
        plan: CachePlan,
        limit_headers: dict[str, str],
        out: Outcome,
        *,
        fail_after: int | None,
        fail_message: str = "Overloaded",
    ) -> web.StreamResponse:
        """The SSE answer; with `fail_after`, an overloaded `error` event after that many output tokens."""
        text, stop_reason, stop_sequence, usage = self._produce(parsed, prompt, plan)
        config = self._config
        size = self._chunk_chars
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        response = web.StreamResponse(headers={**_SSE_HEADERS, "request-id": request_id, **limit_headers})
        await response.prepare(request)
        out.status = 200
        out.streamed = True
        head = message_start_event(message_id=new_id("msg"), model=parsed.model, usage=usage)
        tail = message_delta_event(stop_reason=stop_reason, stop_sequence=stop_sequence, usage=usage)
        tail += MESSAGE_STOP
        if parsed.max_tokens:
            head += CONTENT_BLOCK_START + PING
            tail = CONTENT_BLOCK_STOP + tail
        else:  # a cache pre-warm: no content block at all, as in the JSON answer
            head += PING
            chunks = []
        try:
            if fail_after is None and config.ttft_s == 0 and config.per_token_s == 0:
                # Nothing to pace: one write for the whole stream is the cheapest way to send it.
                out.usage = usage
                out.done()
                await response.write(head + b"".join(map(text_delta_event, chunks)) + tail)
            else:
                await response.write(head)
                sent = await self._paced_deltas(response, chunks, fail_after)
                if fail_after is None:
                    out.usage = usage
                    out.done()
                    await response.write(tail)
                else:
                    out.usage = dataclasses.replace(usage, output_tokens=max(1, sent))
                    out.done()
                    await response.write(stream_error_event("overloaded_error", fail_message))
            await response.write_eof()
        except ConnectionResetError:
            # The client left mid-stream. Returning the response lets aiohttp close it quietly; raising would
            # log a traceback for something that is not an error of the server's.
            out.disconnected = True
        return response

    async def _paced_deltas(
        self, response: web.StreamResponse, chunks: list[str], fail_after: int | None
    ) -> int:
        """Write text deltas after ttft_s, per_token_s apart, stopping at `fail_after` tokens; count them."""
        config = self._config
        if config.ttft_s > 0:
            await asyncio.sleep(config.ttft_s)
        sent = 0
        for chunk in chunks:
            if fail_after is not None and sent >= fail_after:
                break
            await response.write(text_delta_event(chunk))
            tokens = estimate_tokens(chunk)
            sent += tokens
            if config.per_token_s > 0:
                await asyncio.sleep(config.per_token_s * tokens)
        return sent
