"""Message Batches: many calls at half price, sent as batches through the real SDK, resumable across restarts.

`orch.submit_batch(calls)` goes: plan every item as `execute_multiple` would (a bad item fails alone) -> one
run record per item -> the response cache (hits end there; in replay mode a miss is a `CacheMiss` and no batch
is sent) -> the job's key: an open job with the same requests is picked up instead of paying twice -> the
budget reserves every miss's worst case *at batch prices*, all or nothing, before anything is sent -> the job
is written to the registry -> the misses go out in as few batches as the size limits allow. `BatchJob.wait()`
polls each batch, streams its JSONL results as soon as it ends (line by line: never the whole file in memory)
and maps each line back by `custom_id` to its input index: a success is priced with the rate card's batch
discount, settles its reservation, is stored in the response cache under the same key an interactive call
uses, and finishes its run record (`mode="batch"`, `batch_id` the API's id); an `errored` item with a
retryable error goes into a follow-up batch (up to `max_retries` times); anything else releases its
reservation and fails with the reason.

Every HTTP call (create, retrieve, results, cancel) goes through the orchestrator's retry policy; the SDK
client has `max_retries=0`. An interrupt while waiting leaves the batches running on the server and says how
to collect them later (`orch.resume_batch(id)`), which works in a fresh process from the registry.

This module holds the job (`BatchJob`) and the HTTP shell; `_batch_submit.py` builds and finds jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ._batch_registry import BatchRegistry
from ._calls import CallSpec
from ._exceptions import (
    APICallError,
    BackendError,
    BatchError,
    ConfigError,
)
from ._limits import Budget, Reservation
from ._orchestrator import _settle
from ._records import RunRecord
from ._request import Completion, MessageRequest
from ._results import AgentResult
from ._retry import backoff_delay
from ._validate import check_number

if TYPE_CHECKING:
    import pandas as pd

    from ._orchestrator import AsyncAgentOrchestrator

__all__ = [
    "DEFAULT_BATCH_MAX_BYTES",
    "DEFAULT_BATCH_MAX_REQUESTS",
    "DEFAULT_POLL_INTERVAL_S",
    "BatchJob",
    "BatchStatus",
]

log = logging.getLogger("claude_force_nb")

DEFAULT_BATCH_MAX_REQUESTS = 100_000
"""The API's limit on requests in one batch; a larger job is split."""
DEFAULT_BATCH_MAX_BYTES = 256 * 1024 * 1024
"""The API's limit on one batch's body; a larger job is split."""
DEFAULT_POLL_INTERVAL_S = 10.0
"""How often `wait()` asks about a running batch (most batches take minutes to an hour)."""
_ENVELOPE_BYTES = 64  # {"requests":[...]} and the separators around each item
_RESULT_FIELDS = ("processing", "succeeded", "errored", "canceled", "expired")

Progress = Callable[["BatchStatus"], None]


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """Where a job stands: the API's processing status and request counts, summed over its batches, plus
    the items that never needed a batch (`cached`) or could not be sent (`failed_locally`). An item resent
    after a retryable error is counted `errored` in its first batch and again in the next one, so
    `resubmitted` says how many of the `errored` were sent again."""

    processing_status: str  # "in_progress" | "canceling" | "ended" (every batch ended)
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    cached: int
    failed_locally: int
    resubmitted: int
    batch_ids: tuple[str, ...]
    elapsed_s: float

    @property
    def total(self) -> int:
        counted: int = sum(getattr(self, name) for name in _RESULT_FIELDS)
        return counted + self.cached + self.failed_locally - self.resubmitted

    def __str__(self) -> str:
        counts = ", ".join(f"{getattr(self, n)} {n}" for n in _RESULT_FIELDS if getattr(self, n))
        extra = f" ({self.resubmitted} resubmitted)" if self.resubmitted else ""
        extra += f", {self.cached} cached" if self.cached else ""
        extra += f", {self.failed_locally} not sent" if self.failed_locally else ""
        return f"{self.processing_status}: {counts or 'nothing sent'}{extra} ({self.elapsed_s:.0f} s)"


class _Item:
    """One input of a job that went (or goes) into a batch."""

    __slots__ = ("batch_id", "call", "custom_id", "held", "index", "key", "record", "request", "sends")

    def __init__(
        self, index: int, call: CallSpec, request: MessageRequest, key: str, record: RunRecord
    ) -> None:
        self.index = index
        self.call = call
        self.request = request
        self.key = key
        self.record = record
        self.custom_id = f"item-{index}"  # 1-64 of [A-Za-z0-9_-], unique in the job, names the input index
        self.batch_id: str | None = None
        self.held: list[tuple[Budget, Reservation]] = []
        self.sends = 0


# -- the HTTP shell ------------------------------------------------------------------------------------------


async def _api(orch: AsyncAgentOrchestrator, what: str, make: Callable[[], Awaitable[Any]]) -> Any:
    """One batch-API call under the orchestrator's retry policy (SDK errors translated to ours)."""
    from ._backends.anthropic import _translate

    policy = orch.retry_policy
    retries = 0
    while True:
        try:
            return await make()
        except BackendError as exc:
            error = exc
        except Exception as exc:
            error = _translate(exc)
            error.__cause__ = exc
        if not error.retryable or retries >= policy.max_retries:
            raise BatchError(f"{what} failed: {error}") from error
        delay = backoff_delay(retries, policy, retry_after=error.retry_after, rand=random.random())
        log.info("%s failed (%s); retrying in %.2f s", what, error, delay)
        retries += 1
        await asyncio.sleep(delay)


def _client(orch: AsyncAgentOrchestrator) -> Any:
    from ._backends.anthropic import AnthropicBackend

    backend = orch.backend()
    if not isinstance(backend, AnthropicBackend):
        raise ConfigError("Message Batches need the Anthropic backend (the SDK), not a custom backend")
    return backend.client()


def _params(request: MessageRequest) -> dict[str, Any]:
    """A request as a batch item's `params`: the Messages body, sampling fields included."""
    params = request.to_api_kwargs()
    params.update(params.pop("extra_body", None) or {})
    return params


def _completion(message: Any) -> Completion:
    from ._backends.anthropic import _usage

    text = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
    return Completion(
        text=text,
        model=message.model,
        stop_reason=message.stop_reason,
        stop_sequence=message.stop_sequence,
        usage=_usage(message.usage),
        message_id=message.id,
    )


def _chunks(
    items: Sequence[_Item], *, max_requests: int, max_bytes: int
) -> list[list[tuple[_Item, dict[str, Any]]]]:
    """Items with their batch entries, split so no batch passes either limit (an item alone over the byte
    limit still goes alone: the API's 413 then fails just that item)."""
    chunks: list[list[tuple[_Item, dict[str, Any]]]] = []
    current: list[tuple[_Item, dict[str, Any]]] = []
    size = _ENVELOPE_BYTES
    for item in items:
        entry = {"custom_id": item.custom_id, "params": _params(item.request)}
        entry_size = len(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()) + 1
        if current and (len(current) >= max_requests or size + entry_size > max_bytes):
            chunks.append(current)
            current, size = [], _ENVELOPE_BYTES
        current.append((item, entry))
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


# -- the job -------------------------------------------------------------------------------------------------


class BatchJob:
    """A set of calls sent through the Message Batches API: `await job.wait()`, `await job.status()`,
    `job.results()`, `await job.cancel()`, `job.to_frame()`. `job.id` is its first batch's API id (what
    `%agent batch collect ID` and `orch.resume_batch(ID)` take); `job.batch_ids` lists every batch."""

    def __init__(
        self,
        orch: AsyncAgentOrchestrator,
        *,
        job_id: str,
        size: int,
        registry: BatchRegistry | None,
        max_retries: int,
        max_requests: int,
        max_bytes: int,
    ) -> None:
        self._orch = orch
        self.job_id = job_id
        self._results: list[AgentResult | None] = [None] * size
        self._registry = registry
        self._max_retries = max_retries
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._pending: dict[str, dict[str, _Item]] = {}  # batch id -> custom_id -> item still waiting
        self._resend: list[_Item] = []
        self._batch_ids: list[str] = []
        self._counts: dict[str, Mapping[str, int]] = {}
        self._status: dict[str, str] = {}
        self._cached = 0
        self._failed_locally = 0
        self._resubmitted = 0
        self._started = time.time()
        self.reused = False  # True when submit_batch found this job already open (no new batch sent)

    # -- public ------------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._batch_ids[0] if self._batch_ids else self.job_id

    @property
    def batch_ids(self) -> tuple[str, ...]:
        return tuple(self._batch_ids)

    @property
    def done(self) -> bool:
        return not self._pending and not self._resend

    def __len__(self) -> int:
        return len(self._results)

    async def status(self) -> BatchStatus:
        """Refresh every unfinished batch from the API and sum their counts."""
        client = _client(self._orch)
        for batch_id in list(self._pending):
            batch = await _api(
                self._orch,
                f"retrieve batch {batch_id}",
                partial(client.messages.batches.retrieve, batch_id),
            )
            self._note(batch)
        return self._snapshot()

    async def wait(
        self, *, poll_interval: float = DEFAULT_POLL_INTERVAL_S, on_progress: Progress | None = None
    ) -> list[AgentResult]:
        """Poll until every batch has ended and every result is collected (resubmitting retryable errors);
        returns the results in input order. An interrupt leaves the batches running on the server."""
        check_number("poll_interval", poll_interval, above=0.0, unit="seconds")  # inf would never poll again
        try:
            while not self.done:
                if self._resend:
                    await self._send(self._resend)
                    self._resend = []
                status = await self.status()
                for batch_id, state in list(self._status.items()):
                    if state == "ended" and batch_id in self._pending:
                        await self._collect(batch_id)
                if on_progress is not None:
                    on_progress(self._snapshot() if self.done else status)
                if not self.done and not self._resend:
                    await asyncio.sleep(poll_interval)
        except (asyncio.CancelledError, KeyboardInterrupt):
            log.warning(
                "stopped waiting for batch job %s; its batches keep running on the server. Collect it later "
                "with `await orch.resume_batch(%r)` or `%%agent batch collect %s`",
                self.job_id,
                self.id,
                self.id,
            )
            raise
        if self._registry is not None:
            self._registry.set_state(self.job_id, "collected")
        return self.results()

    def results(self) -> list[AgentResult]:
        """Every item's AgentResult in input order (once the job is done; `await job.wait()` first)."""
        if not self.done:
            raise BatchError(f"batch job {self.id} is still running; `await job.wait()` first")
        return [r for r in self._results if r is not None]

    async def cancel(self) -> BatchStatus:
        """Ask the API to cancel every unfinished batch; `wait()` then collects what had finished."""
        client = _client(self._orch)
        self._resend = []  # nothing more goes out
        for batch_id in list(self._pending):
            batch = await _api(
                self._orch, f"cancel batch {batch_id}", partial(client.messages.batches.cancel, batch_id)
            )
            self._note(batch)
        if self._registry is not None:
            self._registry.set_state(self.job_id, "cancelled")
        return self._snapshot()

    def to_frame(self) -> pd.DataFrame:
        """One row per input (in order): agent, status, output, cost, tokens, error, batch_id."""
        import pandas as pd

        rows = []
        for index, result in enumerate(self._results):
            if result is None:
                rows.append({"index": index, "status": "pending", "success": False})
                continue
            rows.append(
                {
                    "index": index,
                    "agent": result.agent_name,
                    "status": result.status,
                    "success": result.success,
                    "cached": result.cached,
                    "output": result.output,
                    "error": result.error,
                    "cost_usd": result.cost_usd,
                    "input_tokens": result.input_tokens,
                    "output_tokens": result.output_tokens,
                    "batch_id": result.metadata.get("batch_id"),
                }
            )
        return pd.DataFrame(rows)

    def collected(self) -> int:
        """How many items have come back from a batch so far (succeeded or failed; cache hits not counted)."""
        return sum(1 for r in self._results if r is not None and r.metadata.get("batch_id"))

    def cost_so_far(self) -> float:
        """Dollars of the results collected so far (at batch prices; cache hits cost nothing)."""
        return sum(r.cost_usd for r in self._results if r is not None)

    def __repr__(self) -> str:
        state = "done" if self.done else f"{sum(map(len, self._pending.values()))} waiting"
        return f"BatchJob({self.id!r}, {len(self._results)} items, {state})"

    # -- internals ---------------------------------------------------------------------------------------

    def _set(self, index: int, result: AgentResult) -> None:
        self._results[index] = result

    def _note(self, batch: Any) -> None:
        self._status[batch.id] = batch.processing_status
        counts = batch.request_counts
        self._counts[batch.id] = {name: int(getattr(counts, name)) for name in _RESULT_FIELDS}

    def _snapshot(self) -> BatchStatus:
        totals = dict.fromkeys(_RESULT_FIELDS, 0)
        for counts in self._counts.values():
            for name in _RESULT_FIELDS:
                totals[name] += counts[name]
        states = set(self._status.values())
        overall = "ended" if self.done else "canceling" if "canceling" in states else "in_progress"
        return BatchStatus(
            processing_status=overall,
            cached=self._cached,
            failed_locally=self._failed_locally,
            resubmitted=self._resubmitted,
            batch_ids=self.batch_ids,
            elapsed_s=time.time() - self._started,
            **totals,
        )

    async def _send(self, items: Sequence[_Item]) -> None:
        """Create the batches for these items (split at the size limits) and register each one."""
        client = _client(self._orch)
        for chunk in _chunks(items, max_requests=self._max_requests, max_bytes=self._max_bytes):
            entries = [entry for _, entry in chunk]
            try:
                batch = await _api(
                    self._orch,
                    f"create a batch of {len(entries)} requests",
                    partial(client.messages.batches.create, requests=entries),
                )
            except BatchError as exc:
                for item, _ in chunk:
                    self._fail(item, exc)
                    self._failed_locally += 1
                continue
            del entries
            self._batch_ids.append(batch.id)
            self._note(batch)
            waiting = self._pending.setdefault(batch.id, {})
            for item, _ in chunk:
                item.batch_id = batch.id
                item.sends += 1
                item.record.batch_id = batch.id
                item.record.attempts = item.sends
                item.record.status = "running"
                waiting[item.custom_id] = item
            if self._registry is not None:
                self._registry.add_batch(self.job_id, batch.id, [item.index for item, _ in chunk])

    async def _collect(self, batch_id: str) -> None:
        """Stream an ended batch's results and finish each of its items (retryable errors are queued)."""
        client = _client(self._orch)
        waiting = self._pending[batch_id]

        async def read() -> None:
            decoder = await client.messages.batches.results(batch_id)
            async for line in decoder:
                item = waiting.pop(line.custom_id, None)
                if item is not None:  # a line for an item already finished (a re-read) is skipped
                    await self._finish(item, line.result)

        await _api(self._orch, f"read the results of batch {batch_id}", read)
        for item in waiting.values():  # the API never returned a line for these
            self._fail(item, BatchError(f"batch {batch_id} returned no result for {item.custom_id}"))
        del self._pending[batch_id]

    async def _finish(self, item: _Item, result: Any) -> None:
        kind = result.type
        if kind == "succeeded":
            orch = self._orch
            completion = _completion(result.message)
            card, at = orch.rate_card, item.record.queued_at
            cost = card.cost(item.request.model, completion.usage, batch=True, at=at)
            _settle(item.held, cost)
            record = item.record
            orch._apply_completion(record, completion, cost=cost)
            # What the batch discount saved against the interactive price (as a cache hit records its saving).
            record.cost_saved_usd = card.cost(item.request.model, completion.usage, at=at) - cost
            orch._finish(record, "succeeded")
            cache = _cache_for(orch, item.call)
            if cache is not None and not cache.replay:
                await orch._cache_store(cache, item.request, completion, record)
            orch.events.emit("finished", record)
            self._set(item.index, _result(record, item.call, cache_key=item.key))
        elif kind == "errored":
            error = result.error.error
            exc = APICallError(
                f"batch item errored: {error.type}: {error.message}", status=None, error_type=error.type
            )
            if exc.retryable and item.sends <= self._max_retries:
                item.record.status = "retrying"
                self._orch.events.emit("retrying", item.record, error=exc)
                self._resend.append(item)
                self._resubmitted += 1
            else:
                self._fail(item, exc)
        elif kind == "canceled":
            self._fail(item, BatchError("canceled: the batch was cancelled before this request ran"))
        else:
            self._fail(
                item, BatchError(f"{kind}: the batch reached its 24-hour limit before this request ran")
            )

    def _fail(self, item: _Item, exc: BaseException) -> None:
        _settle(item.held, 0.0)
        record = item.record
        cancelled = str(exc).startswith("canceled")
        record.error = str(exc)
        record.error_type = type(exc).__name__
        self._orch._finish(record, "cancelled" if cancelled else "failed")
        self._orch.events.emit("cancelled" if cancelled else "failed", record, error=exc)
        self._set(item.index, _result(record, item.call, exception=exc))


# -- building a job ------------------------------------------------------------------------------------------


def _cache_for(orch: AsyncAgentOrchestrator, call: CallSpec) -> Any:
    cache = orch.cache if call.use_cache and orch.cache is not None else None
    return None if cache is None or cache.excludes(call.agent) else cache


def _result(record: RunRecord, call: CallSpec, **extra: Any) -> AgentResult:
    return AgentResult.from_record(record, batch_id=record.batch_id, **extra, **call.metadata)
