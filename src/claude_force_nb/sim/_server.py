"""SimServer: the aiohttp application that answers like the Messages API, on whatever loop starts it.

A /v1/messages request goes through the same gates as on the real service, in this order: the fault picked on
arrival (scripted or random; a fault stands for the service failing before it looks at the request), the API
key, the body (400), the model (404), the rate limits (429), then the answer, as JSON or as an SSE stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from typing import Any, Final

from aiohttp import web

from ._batch_routes import BatchRoutes
from ._config import SimConfig
from ._faults import DEFAULT_AFTER_TOKENS, Fault, error_type_for_status
from ._ratelimit import RateLimited
from ._responder import Outcome, Responder
from ._state import SimState
from ._validate import MessagesRequest, RequestError, parse_messages_request
from ._wire import dumps, error_body, new_id

__all__ = ["SimServer"]

_log = logging.getLogger(__name__)

# The real API accepts request bodies up to 32 MB; aiohttp's default (1 MiB) would reject long prompts.
_MAX_BODY_BYTES: Final = 32 * 1024 * 1024
# Secrets never reach the recorded requests.
_SECRET_HEADERS: Final = frozenset({"x-api-key", "authorization"})
_JSON: Final = "application/json"
_BAD_JSON: Final = object()


def _retry_after_headers(seconds: float, *, with_ms: bool) -> dict[str, str]:
    headers = {"retry-after": str(max(0, math.ceil(seconds)))}
    if with_ms:
        ms = seconds * 1000.0
        headers["retry-after-ms"] = str(int(ms)) if ms == int(ms) else f"{ms:.3f}".rstrip("0").rstrip(".")
    return headers


def error_response(
    status: int, error_type: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"request-id": request_id, "content-type": _JSON}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=error_body(error_type, message, request_id), headers=all_headers)


class SimServer:
    """The simulator's HTTP server; `start()` and `stop()` must run on the same event loop."""

    def __init__(self, config: SimConfig, state: SimState | None = None) -> None:
        self.config = config
        self.state = state if state is not None else SimState(config)
        self._responder = Responder(config, self.state)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        # Handlers still running (hangs, slow streams): cancelled on stop so shutdown never waits for them.
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the simulator server is not running")
        return self._base_url

    async def start(self) -> str:
        """Bind and serve; returns the base URL (the real port when config.port is 0)."""
        # A batch body may be larger than a message body (256 MB); /v1/messages checks its own 32 MB.
        app = web.Application(client_max_size=max(_MAX_BODY_BYTES, self.config.batch_max_bytes + 1024))
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        BatchRoutes(self).register(app)
        app.router.add_get("/_sim/health", self._health)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_get("/_sim/requests", self._requests)
        app.router.add_get("/_sim/config", self._config)
        app.router.add_post("/_sim/script", self._script)
        app.router.add_post("/_sim/reset", self._reset)
        app.router.add_route("*", "/{tail:.*}", self._fallback)
        # No access log: formatting a log line per request would cost more than answering it. Handler
        # cancellation makes a hang end as soon as its client disconnects.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self._base_url = f"http://{host}:{port}"
        return self._base_url

    async def stop(self) -> None:
        """Cancel in-flight handlers, close every connection and the listening socket."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._tasks):
            task.cancel()
        await runner.cleanup()
        self._base_url = None

    # -- /v1/messages and count_tokens ---------------------------------------------------------------------

    def _record(self, request: web.Request, request_id: str, data: object) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        for secret in _SECRET_HEADERS:
            headers.pop(secret, None)
        return {
            "id": request_id,
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "headers": headers,
            "json": None if data is _BAD_JSON else data,
            "stream": isinstance(data, dict) and data.get("stream") is True,
            "status": None,
            "fault": None,
        }

    async def _read(self, request: web.Request) -> tuple[bytes, object]:
        body = await request.read()
        try:
            return body, json.loads(body)
        except ValueError:
            return body, _BAD_JSON

    def _check_key(self, request: web.Request) -> str:
        key = request.headers.get("x-api-key")
        if not key:
            auth = request.headers.get("authorization", "")
            key = auth[7:] if auth[:7].lower() == "bearer " else ""
        if not key:
            raise RequestError(401, "authentication_error", "x-api-key header is required")
        if self.config.api_key is not None and key != self.config.api_key:
            raise RequestError(401, "authentication_error", "invalid x-api-key")
        return key

    def _parse(self, data: object, *, count_only: bool) -> MessagesRequest:
        if data is _BAD_JSON:
            raise RequestError(400, "invalid_request_error", "The request body is not valid JSON")
        parsed = parse_messages_request(data, count_only=count_only)
        if (
            self.config.models is not None and parsed.model not in self.config.models
        ) or self.config.is_retired(parsed.model):
            # What the API says for a retired model too: nothing in the answer says it was retired.
            raise RequestError(404, "not_found_error", f"model: {parsed.model}")
        return parsed

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        request_id = new_id("req")
        try:
            body, data = await self._read(request)
            if len(body) > _MAX_BODY_BYTES:
                raise web.HTTPRequestEntityTooLarge(max_size=_MAX_BODY_BYTES, actual_size=len(body))
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "request_too_large", "Request exceeds the maximum size", request_id)
        record = self._record(request, request_id, data)
        fault = self.state.arrive(record, body, is_messages=True)
        out = Outcome(
            lambda o: self.state.finish(
                record,
                o.status,
                is_messages=True,
                usage=o.usage,
                streamed=o.streamed,
                disconnected=o.disconnected,
            )
        )
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._answer(request, request_id, data, fault, out)
        except RequestError as exc:
            out.status = exc.status
            return error_response(exc.status, exc.error_type, exc.message, request_id)
        except (asyncio.CancelledError, ConnectionResetError):
            out.disconnected = True
            raise
        except Exception:
            # A bug in the simulator: say so in the API's own error shape rather than aiohttp's text page, and
            # keep the traceback (this path is never hot, so logging here costs nothing that matters).
            if out.streamed:
                raise
            _log.exception("simulator error while answering %s", request_id)
            out.status = 500
            return error_response(
                500, "api_error", "Internal simulator error; see the server log", request_id
            )
        finally:
            if task is not None:
                self._tasks.discard(task)
            out.done()

    async def _answer(
        self, request: web.Request, request_id: str, data: object, fault: Fault | None, out: Outcome
    ) -> web.StreamResponse:
        stream = isinstance(data, dict) and data.get("stream") is True
        if fault is not None:
            early = await self._early_fault(request, request_id, fault, stream, out)
            if early is not None:
                return early
        key = self._check_key(request)
        parsed = self._parse(data, count_only=False)
        if fault is not None and fault.kind == "stream_overloaded" and not parsed.stream:
            # Without a stream to break, the fault is what a streaming client would see first: a 529.
            overloaded = Fault(
                "overloaded",
                retry_after=fault.retry_after,
                should_retry=fault.should_retry,
                message=fault.message,
            )
            return self._fault_response(overloaded, request_id, out)
        prompt, plan, refused, limit_headers = self._responder.admit(key, parsed)
        if refused is not None:
            return self._rate_limited(refused, request_id, limit_headers, out)
        if parsed.stream:
            fail_after, fail_message = None, "Overloaded"
            if fault is not None and fault.kind == "stream_overloaded":
                fail_after = fault.after_tokens if fault.after_tokens is not None else DEFAULT_AFTER_TOKENS
                fail_message = fault.message or fail_message
            return await self._responder.stream(
                request,
                request_id,
                parsed,
                prompt,
                plan,
                limit_headers,
                out,
                fail_after=fail_after,
                fail_message=fail_message,
            )
        return await self._responder.respond(request_id, parsed, prompt, plan, limit_headers, out)

    async def _early_fault(
        self, request: web.Request, request_id: str, fault: Fault, stream: bool, out: Outcome
    ) -> web.StreamResponse | None:
        kind = fault.kind
        if kind == "stream_overloaded":
            return None
        if kind == "hang":
            # Send nothing for a while, then answer normally; a disconnect or stop cancels the wait.
            await asyncio.sleep(fault.hang_s if fault.hang_s is not None else self.config.hang_s)
            return None
        if kind == "reset":
            transport = request.transport
            if transport is not None:
                transport.abort()
            # The connection is gone; wait to be cancelled by the lost connection, as any handler would be.
            await asyncio.Event().wait()
            return None  # pragma: no cover - the wait above only ends by cancellation
        if kind == "malformed":
            out.status = 200
            if stream:
                body = b'event: message_start\ndata: {"type": "message_start", "message": {"id": \n\n'
                headers = {"content-type": "text/event-stream; charset=utf-8", "request-id": request_id}
            else:
                body = b'{"id": "msg_sim_malformed", "type": "message", "content": [{"type": "te'
                headers = {"content-type": _JSON, "request-id": request_id}
            return web.Response(status=200, body=body, headers=headers)
        return self._fault_response(fault, request_id, out)

    def _fault_response(self, fault: Fault, request_id: str, out: Outcome) -> web.Response:
        status = fault.status_code
        assert status is not None
        error_type = error_type_for_status(status)
        headers: dict[str, str] = {}
        retry_after = fault.retry_after
        if fault.kind == "rate_limit" and retry_after is None:
            retry_after = 1.0
        if retry_after is not None:
            headers.update(_retry_after_headers(retry_after, with_ms=self.config.retry_after_ms))
        if fault.should_retry is not None:
            headers["x-should-retry"] = "true" if fault.should_retry else "false"
        message = fault.message or _DEFAULT_MESSAGES.get(error_type, f"Simulated error {status}")
        out.status = status
        return error_response(status, error_type, message, request_id, headers)

    def _rate_limited(
        self, refused: RateLimited, request_id: str, limit_headers: dict[str, str], out: Outcome
    ) -> web.Response:
        headers = dict(limit_headers)
        headers.update(_retry_after_headers(refused.retry_after_s, with_ms=self.config.retry_after_ms))
        out.status = 429
        return error_response(429, "rate_limit_error", refused.message, request_id, headers)

    async def _count_tokens(self, request: web.Request) -> web.Response:
        request_id = new_id("req")
        try:
            body, data = await self._read(request)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "request_too_large", "Request exceeds the maximum size", request_id)
        record = self._record(request, request_id, data)
        self.state.arrive(record, body, is_messages=False)
        status = 200
        try:
            self._check_key(request)
            parsed = self._parse(data, count_only=True)
            refused = self.state.admit_count()
            if refused is not None:
                status = 429
                headers = _retry_after_headers(refused.retry_after_s, with_ms=self.config.retry_after_ms)
                return error_response(429, "rate_limit_error", refused.message, request_id, headers)
            total = self._responder.count(parsed)
            return web.Response(
                body=dumps({"input_tokens": total}).encode(),
                headers={"content-type": _JSON, "request-id": request_id},
            )
        except RequestError as exc:
            status = exc.status
            return error_response(exc.status, exc.error_type, exc.message, request_id)
        finally:
            self.state.finish(record, status, is_messages=False)

    # -- admin endpoints -----------------------------------------------------------------------------------

    @staticmethod
    def _admin_json(payload: object, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=dumps(payload).encode(),
            headers={"content-type": _JSON, "request-id": new_id("req")},
        )

    async def _health(self, request: web.Request) -> web.Response:
        return self._admin_json({"status": "ok", "pid": os.getpid(), "base_url": self._base_url})

    async def _stats(self, request: web.Request) -> web.Response:
        return self._admin_json(self.state.stats())

    async def _requests(self, request: web.Request) -> web.Response:
        return self._admin_json(self.state.requests())

    async def _config(self, request: web.Request) -> web.Response:
        return self._admin_json(self.config.to_dict())

    async def _script(self, request: web.Request) -> web.Response:
        try:
            spec = json.loads(await request.read())
            if not isinstance(spec, dict):
                raise ValueError('expected {"fault": {...}, "times": n, "match": "..."}')
            fault_spec = spec.get("fault")
            if not isinstance(fault_spec, dict):
                raise ValueError('"fault" must be an object such as {"kind": "overloaded"}')
            self.state.script(Fault.from_dict(fault_spec), spec.get("times", 1), spec.get("match"))
        except (ValueError, TypeError) as exc:
            return error_response(400, "invalid_request_error", f"bad fault script: {exc}", new_id("req"))
        return self._admin_json({"ok": True, "pending": self.state.stats()["scripted_pending"]})

    async def _reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return self._admin_json({"ok": True})

    async def _fallback(self, request: web.Request) -> web.Response:
        if request.path in ("/v1/messages", "/v1/messages/count_tokens"):
            return error_response(
                405, "invalid_request_error", f"Method {request.method} not allowed", new_id("req")
            )
        return error_response(
            404, "not_found_error", f"Not found: {request.method} {request.path}", new_id("req")
        )


_DEFAULT_MESSAGES: Final = {
    "rate_limit_error": "Simulated rate limit: slow down",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}
