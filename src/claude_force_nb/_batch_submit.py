"""Building and finding batch jobs: `submit_batch` (plan, cache first, budget, register, send),
`resume_batch` (a job rebuilt from the registry), and a registered job's status, cancel and listing.

`_batch.py` holds the job itself (`BatchJob`: polling, collecting, resubmitting) and the HTTP shell; see its
docstring for the whole flow.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from ._batch import (
    DEFAULT_BATCH_MAX_BYTES,
    DEFAULT_BATCH_MAX_REQUESTS,
    BatchJob,
    BatchStatus,
    _api,
    _cache_for,
    _client,
    _Item,
    _result,
)
from ._batch_registry import BatchRegistry, RegisteredItem, RegisteredJob, job_key
from ._calls import CallSpec, Plan, as_call, preview
from ._exceptions import (
    BatchError,
    BudgetExceededError,
    CacheMiss,
    ConfigError,
    RetiredModelError,
)
from ._limits import Budget, Reservation
from ._orchestrator import _settle
from ._records import RunRecord, new_run_id
from ._request import MessageRequest
from ._results import AgentResult

if TYPE_CHECKING:
    from ._orchestrator import AsyncAgentOrchestrator

__all__ = ["batch_status", "cancel_job", "list_jobs", "resume_batch", "submit_batch"]

log = logging.getLogger("claude_force_nb")


BATCH_LEASE_S = 25 * 3600.0
"""How long a batch item's hold on a shared ledger lasts: a batch ends within 24 hours (the API expires it
then), plus an hour's margin. The lease is fixed, not renewed by the submitting process, because the batch
runs on whether or not that process does; whichever process collects the job settles the holds by their
lease ids (kept in the registry). A hold nobody settles by then counts as spent at its worst case."""


def _new_record(orch: AsyncAgentOrchestrator, call: CallSpec, request: MessageRequest) -> RunRecord:
    record = RunRecord.queued(call.agent, request.model, call.task, mode="batch")
    orch._track_queued(record)
    return record


async def _from_cache(job: BatchJob, index: int, call: CallSpec, request: MessageRequest) -> bool:
    """Serve an item from the response cache if it is there (True); in replay mode fail it if not."""
    orch = job._orch
    cache = _cache_for(orch, call)
    if cache is None or call.refresh:
        return False
    hit = await orch._cache_lookup(cache, request, call.agent)
    if hit is None and not cache.replay:
        return False
    record = _new_record(orch, call, request)
    if hit is None:
        exc = CacheMiss(
            f"replay mode: no cached answer for agent {call.agent!r} on task {preview(call.task)!r}; "
            "no batch is sent in replay mode",
            agent=call.agent,
            task=call.task,
        )
        record.error, record.error_type = str(exc), type(exc).__name__
        orch._finish(record, "failed")
        orch.events.emit("failed", record, error=exc)
        job._set(index, _result(record, call, exception=exc))
        job._failed_locally += 1
        return True
    record.cached = True
    record.cost_saved_usd = hit.cost_usd
    orch._apply_completion(record, hit.completion, cost=0.0)
    orch._finish(record, "cached", started=record.queued_at)
    orch.events.emit("cached", record)
    job._set(index, _result(record, call, cache_key=hit.key))
    job._cached += 1
    return True


async def _reserve_all(orch: AsyncAgentOrchestrator, items: Sequence[_Item]) -> None:
    """Reserve every item's worst case at batch prices, or nothing.

    A batch the budget could never cover (its total worst case is more than the budget minus what is
    already spent) is refused at once, naming the amount; otherwise each item's reservation may wait, as an
    interactive call's does, for calls in flight to settle.
    """
    factor = 1.0 - orch.rate_card.batch_discount
    worst = [orch._worst_case(item.request) * factor for item in items]
    totals: dict[int, tuple[Budget, float]] = {}
    for item, amount in zip(items, worst, strict=True):
        for budget in (orch.budget, item.call.budget):
            if budget is not None and budget.limit_usd is not None:
                totals[id(budget)] = (budget, totals.get(id(budget), (budget, 0.0))[1] + amount)
    for budget, total in totals.values():
        limit = budget.limit_usd
        assert limit is not None
        if math.isnan(total) or total > limit - budget.spent_usd + 1e-12:
            unpriced = (
                " (a model is not in the rate card, so its cost cannot be bounded)"
                if math.isnan(total)
                else ""
            )
            raise BudgetExceededError(
                f"batch refused before sending: its {len(items)} requests need up to ${total:.4f} at batch "
                f"prices, but ${max(limit - budget.spent_usd, 0.0):.4f} of the ${limit:.2f} budget is "
                f"unspent{unpriced}"
            )
    try:
        for item, amount in zip(items, worst, strict=True):
            for budget in (orch.budget, item.call.budget):
                if budget is not None and budget.limit_usd is not None:
                    reservation = await budget.reserve(
                        amount, what=f"{item.call.agent} batch item", lease_s=BATCH_LEASE_S
                    )
                    item.held.append((budget, reservation))
    except BaseException:
        for item in items:
            _settle(item.held, 0.0)
        raise


def _registry(orch: AsyncAgentOrchestrator, registry: BatchRegistry | None) -> BatchRegistry:
    return registry if registry is not None else BatchRegistry.in_folder(orch._data_dir)


def _endpoint(orch: AsyncAgentOrchestrator) -> str:
    return orch.base_url or "https://api.anthropic.com"


async def submit_batch(
    orch: AsyncAgentOrchestrator,
    calls: Iterable[tuple[str, str] | CallSpec | Mapping[str, Any]],
    *,
    use_cache: bool = True,
    refresh: bool = False,
    max_retries: int | None = None,
    max_requests_per_batch: int = DEFAULT_BATCH_MAX_REQUESTS,
    max_bytes_per_batch: int = DEFAULT_BATCH_MAX_BYTES,
    registry: BatchRegistry | None = None,
    reuse_open: bool = True,
) -> BatchJob:
    """See `AsyncAgentOrchestrator.submit_batch`."""
    from ._cache.key import keyed_request

    if max_requests_per_batch < 1 or max_bytes_per_batch < 1:
        raise ValueError("max_requests_per_batch and max_bytes_per_batch must be >= 1")
    registry = _registry(orch, registry)
    fanout = new_run_id()
    specs = [as_call(item, use_cache=use_cache, refresh=refresh, batch_id=fanout) for item in calls]
    plans: list[tuple[int, Plan]] = []
    invalid: list[tuple[int, str, BaseException]] = []
    for index, spec in enumerate(specs):
        if isinstance(spec, BaseException):
            invalid.append((index, "?", spec))
            continue
        try:
            plans.append((index, orch._plan(replace(spec, batch_id=None))))
        except (ConfigError, ValueError, TypeError) as exc:
            invalid.append((index, spec.agent, exc))
    keyed = [(index, plan, *keyed_request(plan.request)) for index, plan in plans]
    endpoint = _endpoint(orch)
    key = job_key([k for _, _, k, _ in keyed], endpoint)
    if reuse_open and not orch.replay:
        open_job = registry.open_job(key)
        if open_job is not None and open_job.batch_ids:
            log.warning(
                "these requests are already in batch job %s (still open): collecting that one instead of "
                "sending them again (reuse_open=False sends a new batch)",
                open_job.batch_ids[0],
            )
            job = await resume_batch(orch, open_job.batch_ids[0], registry=registry)
            job.reused = True
            return job
    retries = orch.retry_policy.max_retries if max_retries is None else max_retries
    job = BatchJob(
        orch,
        job_id=f"cfnbjob_{new_run_id()}",
        size=len(specs),
        registry=registry,
        max_retries=retries,
        max_requests=max_requests_per_batch,
        max_bytes=max_bytes_per_batch,
    )
    orch._batch_jobs[job.job_id] = job
    for index, agent, error in invalid:
        job._set(
            index,
            AgentResult(
                agent_name=agent, success=False, errors=[str(error)], status="invalid", exception=error
            ),
        )
        job._failed_locally += 1
    misses: list[_Item] = []
    for index, plan, cache_key, _ in keyed:
        if await _from_cache(job, index, plan.call, plan.request):
            continue
        item = _Item(index, plan.call, plan.request, cache_key, _new_record(orch, plan.call, plan.request))
        try:
            orch._check_model(
                plan.request.model
            )  # a retired model is refused before sending, as interactively
        except RetiredModelError as exc:
            job._fail(item, exc)
            job._failed_locally += 1
            continue
        misses.append(item)
    if not misses:
        return job
    try:
        await _reserve_all(orch, misses)
    except BudgetExceededError as exc:
        for item in misses:
            item.record.error, item.record.error_type = str(exc), type(exc).__name__
            orch._finish(item.record, "refused")
            orch.events.emit("refused", item.record, error=exc)
        raise
    from ._coord import SharedReservation

    leases = {  # the items' holds on a shared ledger: whichever process collects the job settles them
        item.index: (reservation.lease, reservation.amount)
        for item in misses
        for budget, reservation in item.held
        if budget is orch.budget and isinstance(reservation, SharedReservation)
    }
    registry.add_job(
        job.job_id,
        job_key=key,
        endpoint=endpoint,
        items=[
            RegisteredItem(
                index,
                f"item-{index}",
                None,
                plan.call.agent,
                plan.call.task,
                cache_key,
                canonical.decode(),
                *leases.get(index, (None, 0.0)),
            )
            for index, plan, cache_key, canonical in keyed
        ],
    )
    # The planning lists (canonical request bytes above all) are not needed any more: free them before the
    # SDK builds the batch body, the high-water mark of a large job's memory.
    del keyed, plans, specs
    await job._send(misses)
    return job


async def resume_batch(
    orch: AsyncAgentOrchestrator, batch_id: str, *, registry: BatchRegistry | None = None
) -> BatchJob:
    """A job rebuilt from the registry (by its job id or any of its batch ids), ready to `wait()`."""
    from ._cache.key import request_from_semantic
    from ._coord import SharedBudget, SharedReservation

    registry = _registry(orch, registry)
    found: RegisteredJob | None = registry.find(batch_id)
    if found is None:
        raise BatchError(
            f"no batch job {batch_id!r} in the registry {registry.path}; "
            "`%agent batches` lists the known ones"
        )
    if found.endpoint != _endpoint(orch):
        raise BatchError(
            f"batch job {batch_id} was sent to {found.endpoint}, not to this orchestrator's {_endpoint(orch)}"
        )
    live = orch._batch_jobs.get(found.job_id)
    if live is not None and not live.done:
        return live  # this orchestrator is already collecting it: a second collector would count it twice
    job = BatchJob(
        orch,
        job_id=found.job_id,
        size=found.n_items,
        registry=registry,
        max_retries=orch.retry_policy.max_retries,
        max_requests=DEFAULT_BATCH_MAX_REQUESTS,
        max_bytes=DEFAULT_BATCH_MAX_BYTES,
    )
    job._batch_ids = list(found.batch_ids)
    orch._batch_jobs[job.job_id] = job
    shared = orch.budget if isinstance(orch.budget, SharedBudget) else None
    if shared is not None:
        # Join the ledger first, so the holds this job's submitter left are settled in the ledger's epoch.
        # (Redis down: they are settled once it answers; at worst a hold also lapses, counted twice, never
        # under-counted.)
        shared.coordination.start()
        await shared.coordination.rejoin()
    for entry in registry.items(found.job_id):
        request = request_from_semantic(json.loads(entry.request))
        call = CallSpec(agent=entry.agent, task=entry.task)
        if entry.batch_id is None:  # served from the cache at submission: serve it from there again
            if not await _from_cache(job, entry.index, call, request):
                record = _new_record(orch, call, request)
                job._fail(
                    _Item(entry.index, call, request, entry.cache_key, record),
                    BatchError("this item was served from the cache at submission and is no longer cached"),
                )
            continue
        item = _Item(entry.index, call, request, entry.cache_key, _new_record(orch, call, request))
        item.batch_id = item.record.batch_id = entry.batch_id
        item.sends = 1
        item.record.status = "running"
        if entry.lease is not None and shared is not None:
            # its hold on the shared ledger, whoever reserved it: settling it there counts the cost once
            item.held.append((shared, SharedReservation(entry.held, entry.lease)))
        job._pending.setdefault(entry.batch_id, {})[item.custom_id] = item
    waiting_indexes = {item.index for waiting in job._pending.values() for item in waiting.values()}
    for index, result in enumerate(job._results):
        if result is None and index not in waiting_indexes:  # an invalid input: it never had a request
            job._set(
                index, AgentResult(agent_name="?", success=False, status="invalid", errors=["not submitted"])
            )
    # Other costs settle straight into the budget: the process that sent the job reserved them, not this one.
    for waiting in job._pending.values():
        for item in waiting.values():
            if orch.budget.limit_usd is not None and not item.held:
                item.held.append((orch.budget, Reservation(0.0)))
    try:
        await job.status()
    except BatchError as exc:
        raise BatchError(
            f"batch job {batch_id}: the API does not know its batches with this key "
            f"(another workspace or key?): {exc}"
        ) from exc
    return job


def list_jobs(orch: AsyncAgentOrchestrator, registry: BatchRegistry | None = None) -> list[RegisteredJob]:
    return _registry(orch, registry).jobs()


def _registered(orch: AsyncAgentOrchestrator, batch_id: str, registry: BatchRegistry | None) -> RegisteredJob:
    found = _registry(orch, registry).find(batch_id)
    if found is None:
        raise BatchError(f"no batch job {batch_id!r} in the registry; `%agent batches` lists the known ones")
    return found


async def batch_status(
    orch: AsyncAgentOrchestrator, batch_id: str, *, registry: BatchRegistry | None = None
) -> BatchStatus:
    """A registered job's status from the API, without collecting anything (no run records)."""
    found = _registered(orch, batch_id, registry)
    job = BatchJob(
        orch,
        job_id=found.job_id,
        size=found.n_items,
        registry=None,
        max_retries=0,
        max_requests=DEFAULT_BATCH_MAX_REQUESTS,
        max_bytes=DEFAULT_BATCH_MAX_BYTES,
    )
    job._batch_ids = list(found.batch_ids)
    job._pending = {b: {} for b in found.batch_ids}
    job._started = found.created
    status = await job.status()
    ended = all(state == "ended" for state in job._status.values())
    return replace(status, processing_status="ended" if ended else status.processing_status)


async def cancel_job(
    orch: AsyncAgentOrchestrator, batch_id: str, *, registry: BatchRegistry | None = None
) -> BatchStatus:
    """Ask the API to cancel every batch of a registered job (collect it afterwards for what finished)."""
    found = _registered(orch, batch_id, registry)
    client = _client(orch)
    for one in found.batch_ids:
        await _api(orch, f"cancel batch {one}", partial(client.messages.batches.cancel, one))
    return await batch_status(orch, batch_id, registry=registry)
