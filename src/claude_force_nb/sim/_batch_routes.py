"""The /v1/messages/batches endpoints: create, retrieve, list, cancel, delete and the JSONL results.

Each call passes the same gates as /v1/messages where they apply: the fault picked on arrival (scripted
faults match on the path plus the body, so a test can fail just `/cancel` or just `/results`), then the API
key. The book of batches (`_batches.py`) decides everything else; this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from ._responder import Outcome
from ._validate import RequestError
from ._wire import dumps, new_id

if TYPE_CHECKING:
    from ._server import SimServer

__all__ = ["BatchRoutes"]

_JSON: Final = "application/json"
_PREFIX: Final = "/v1/messages/batches"
_RESULTS_CHUNK_LINES: Final = 256

Handler = Callable[[web.Request, str, str, bytes], Awaitable[web.StreamResponse]]


class BatchRoutes:
    """The batch endpoints of one SimServer."""

    def __init__(self, server: SimServer) -> None:
        self._server = server

    def register(self, app: web.Application) -> None:
        router = app.router
        router.add_post(_PREFIX, self._wrap(self._create))
        router.add_get(_PREFIX, self._wrap(self._list))
        router.add_get(_PREFIX + "/{batch_id}", self._wrap(self._retrieve))
        router.add_delete(_PREFIX + "/{batch_id}", self._wrap(self._delete))
        router.add_post(_PREFIX + "/{batch_id}/cancel", self._wrap(self._cancel))
        router.add_get(_PREFIX + "/{batch_id}/results", self._wrap(self._results))

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        server = self._server

        async def endpoint(request: web.Request) -> web.StreamResponse:
            from ._server import error_response

            request_id = new_id("req")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return error_response(
                    413, "request_too_large", "Request exceeds the maximum size", request_id
                )
            state = server.state
            record = server._record(request, request_id, None)
            fault = state.batch_arrive(record, request.path.encode() + b" " + body)
            out = Outcome(lambda o: state.batch_finish(record, o.status or 0))
            try:
                if fault is not None:
                    early = await server._early_fault(request, request_id, fault, False, out)
                    if early is not None:
                        return early
                key = server._check_key(request)
                if len(body) > server.config.batch_max_bytes:
                    raise RequestError(
                        413,
                        "request_too_large",
                        f"A batch body is limited to {server.config.batch_max_bytes} bytes, got {len(body)}",
                    )
                response = await handler(request, request_id, key, body)
                out.status = response.status
                return response
            except RequestError as exc:
                out.status = exc.status
                return error_response(exc.status, exc.error_type, exc.message, request_id)
            finally:
                out.done()

        return endpoint

    @staticmethod
    def _json(payload: object, request_id: str) -> web.Response:
        return web.Response(
            body=dumps(payload).encode(), headers={"content-type": _JSON, "request-id": request_id}
        )

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def _create(
        self, request: web.Request, request_id: str, key: str, body: bytes
    ) -> web.StreamResponse:
        import json

        try:
            data: Any = json.loads(body)
        except ValueError:
            raise RequestError(400, "invalid_request_error", "The request body is not valid JSON") from None
        book = self._server.state.batches
        batch = book.create(key, data, models=self._server.config.models)
        return self._json(batch.to_dict(self._base(request)), request_id)

    async def _retrieve(
        self, request: web.Request, request_id: str, key: str, body: bytes
    ) -> web.StreamResponse:
        batch = self._server.state.batches.get(key, request.match_info["batch_id"])
        return self._json(batch.to_dict(self._base(request)), request_id)

    async def _list(self, request: web.Request, request_id: str, key: str, body: bytes) -> web.StreamResponse:
        query = request.query
        page = self._server.state.batches.page(
            key, after_id=query.get("after_id"), before_id=query.get("before_id"), limit=query.get("limit")
        )
        base = self._base(request)
        page["data"] = [batch.to_dict(base) for batch in page.pop("batches")]
        return self._json(page, request_id)

    async def _cancel(
        self, request: web.Request, request_id: str, key: str, body: bytes
    ) -> web.StreamResponse:
        batch = self._server.state.batches.cancel(key, request.match_info["batch_id"])
        return self._json(batch.to_dict(self._base(request)), request_id)

    async def _delete(
        self, request: web.Request, request_id: str, key: str, body: bytes
    ) -> web.StreamResponse:
        batch_id = request.match_info["batch_id"]
        self._server.state.batches.delete(key, batch_id)
        return self._json({"id": batch_id, "type": "message_batch_deleted"}, request_id)

    async def _results(
        self, request: web.Request, request_id: str, key: str, body: bytes
    ) -> web.StreamResponse:
        responder = self._server._responder
        lines = self._server.state.batches.results(
            key, request.match_info["batch_id"], responder.batch_message
        )
        response = web.StreamResponse(
            headers={"content-type": "application/x-jsonl", "request-id": request_id}
        )
        await response.prepare(request)
        for start in range(0, len(lines), _RESULTS_CHUNK_LINES):
            await response.write(b"".join(lines[start : start + _RESULTS_CHUNK_LINES]))
            await asyncio.sleep(0)  # let other requests in between chunks of a large file
        await response.write_eof()
        return response
