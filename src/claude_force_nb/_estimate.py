"""The cost preview: what a set of calls would cost, found without running any of them.

`estimate_calls(orch, calls)` (behind `await orch.estimate(calls)` and `%%agent ... --estimate`) plans every
call exactly as a run would, then for each one:

- a response-cache hit costs nothing (and in replay mode a miss is listed: it would fail, nothing is sent);
- otherwise its input tokens come from the Messages API's `count_tokens` endpoint, which is free and exact
  for input, where no offline tokenizer is (the 5.x models' tokenizer gives about 30% more tokens than the
  older one). The simulator implements the same endpoint, so a preview works offline too.

`TokenCounter` owns those requests: one per distinct prompt (identical prompts in a fan-out are counted
once), paced by its own requests-per-minute limit (the endpoint has one, apart from the Messages API's),
retried under the orchestrator's `RetryPolicy`, and cached by request key, so repeating a preview sends
nothing. A count that still fails falls back to the byte upper bound and the preview's row says so.

The counts also tighten budgets: once a preview has counted a call, its reservation prices the counted
tokens (with a margin, since the endpoint's answer is an estimate) instead of the byte bound, so fewer
calls are refused for a worst case they could never reach.

Costs are a range: input exactly as counted (at the input rate, or at the cache-write rate for the dearest
case when the system prompt is marked for caching), output from 0 to `max_tokens`, and a typical figure
from the median output of this session's earlier runs of the same agent and model, when there are any.
Interactive and batch prices are side by side. An unknown model is unpriced (NaN, never $0), with the
closest known names.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._calls import CallSpec, Plan, as_call, worst_case_prompt_tokens
from ._exceptions import AttemptTimeoutError, BackendError, ConfigError
from ._limits import RateLimiter
from ._pricing import format_cost
from ._records import new_run_id
from ._request import MessageRequest
from ._retry import RetryPolicy, backoff_delay

if TYPE_CHECKING:
    import pandas as pd

    from ._orchestrator import AsyncAgentOrchestrator

__all__ = ["CallEstimate", "CostEstimate", "TokenCounter", "counted_prompt_bound", "estimate_calls"]

COUNT_MARGIN = 0.05
"""Headroom on a counted prompt when it bounds a budget reservation: count_tokens returns an estimate."""
_COUNT_SLACK_TOKENS = 16


def counted_prompt_bound(counted: int, request: MessageRequest) -> int:
    """A budget's upper bound on a prompt the endpoint counted: the count plus a margin, never above the
    byte bound (which holds whatever the tokenizer)."""
    padded = math.ceil(counted * (1.0 + COUNT_MARGIN)) + _COUNT_SLACK_TOKENS
    return min(padded, worst_case_prompt_tokens(request))


def count_key(request: MessageRequest) -> str:
    """What decides a prompt's token count: model, system and turns, tools, and nothing about the output."""
    payload = {
        "model": request.model,
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "tools": [dict(t) for t in request.tools],
        "tool_choice": dict(request.tool_choice) if request.tool_choice is not None else None,
        "thinking": dict(request.thinking) if request.thinking is not None else None,
    }
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class TokenCounter:
    """count_tokens answers by request key: paced, retried, cached for the orchestrator's lifetime."""

    def __init__(
        self,
        *,
        requests_per_minute: float | None = None,
        retry_policy: RetryPolicy | None = None,
        max_concurrent: int = 10,
        timeout_s: float = 60.0,
    ) -> None:
        self.limiter = RateLimiter(requests_per_minute=requests_per_minute)
        self.retry_policy = retry_policy or RetryPolicy()
        self.timeout_s = timeout_s
        self.requests_sent = 0
        self._slots = asyncio.Semaphore(max_concurrent) if max_concurrent > 0 else None
        self._counts: dict[str, int] = {}
        self._pending: dict[str, asyncio.Future[int]] = {}
        self._random = random.Random()

    def __len__(self) -> int:
        return len(self._counts)

    def known(self, request: MessageRequest) -> int | None:
        """The counted input tokens of `request`, if a preview has counted it."""
        return self._counts.get(count_key(request))

    async def count(self, backend: Any, request: MessageRequest) -> int:
        """The request's input tokens: from the cache, from a count already in flight, or by asking."""
        key = count_key(request)
        if key in self._counts:
            return self._counts[key]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            tokens = await self._ask(backend, request)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            else:
                future.cancel()
            raise
        finally:
            self._pending.pop(key, None)
        self._counts[key] = tokens
        future.set_result(tokens)
        return tokens

    async def _ask(self, backend: Any, request: MessageRequest) -> int:
        """Attempts until one answers or a failure is not retryable (the orchestrator's policy)."""
        policy = self.retry_policy
        retries = 0
        while True:
            if self._slots is not None:
                await self._slots.acquire()
            try:
                await self.limiter.acquire(input_tokens=0, output_tokens=0)
                self.requests_sent += 1
                try:
                    return int(await asyncio.wait_for(backend.count_tokens(request), self.timeout_s))
                except asyncio.TimeoutError:
                    error: BackendError = AttemptTimeoutError(
                        f"count_tokens took longer than {self.timeout_s:g} s"
                    )
                except BackendError as exc:
                    error = exc
            finally:
                if self._slots is not None:
                    self._slots.release()
            if not error.retryable or retries >= policy.max_retries:
                raise error
            delay = backoff_delay(retries, policy, retry_after=error.retry_after, rand=self._random.random())
            if getattr(error, "status", None) == 429:
                self.limiter.pause(delay)  # the endpoint's limit is shared by every count in flight
            retries += 1
            await asyncio.sleep(delay)


@dataclass(frozen=True, kw_only=True)
class CallEstimate:
    """One call of a preview. Costs are dollars; NaN means unpriced (or unknown), never "free"."""

    index: int
    agent: str
    model: str
    tokens_from: str  # count_tokens | byte bound | response cache | replay miss | retired | invalid
    input_tokens: int | None
    max_tokens: int
    typical_output_tokens: float
    cost_min: float
    cost_typical: float
    cost_max: float
    batch_min: float
    batch_typical: float
    batch_max: float
    cost_saved: float = 0.0
    note: str = ""

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COLUMNS}


_COLUMNS = (
    "index",
    "agent",
    "model",
    "tokens_from",
    "input_tokens",
    "max_tokens",
    "typical_output_tokens",
    "cost_min",
    "cost_typical",
    "cost_max",
    "batch_min",
    "batch_typical",
    "batch_max",
    "cost_saved",
    "note",
)


@dataclass(frozen=True)
class CostEstimate:
    """A preview of many calls: one `CallEstimate` per call, totals, and how many count_tokens requests it
    sent. `to_frame()` gives one row per call."""

    calls: Sequence[CallEstimate]
    requests_sent: int
    notes: tuple[str, ...] = field(default=())

    def total(self, name: str) -> float:
        """The sum of one cost column over every call (`cost_min`, `cost_typical`, `batch_max`, ...); NaN
        when any call's figure is unpriced or unknown."""
        return math.fsum(getattr(c, name) for c in self.calls)

    @property
    def cost_min(self) -> float:
        return self.total("cost_min")

    @property
    def cost_max(self) -> float:
        return self.total("cost_max")

    @property
    def cost_typical(self) -> float:
        """The typical total, NaN unless every call has a typical figure (or costs nothing)."""
        return self.total("cost_typical")

    @property
    def cached(self) -> int:
        return sum(c.tokens_from == "response cache" for c in self.calls)

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens or 0 for c in self.calls)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([c.row() for c in self.calls], columns=list(_COLUMNS))

    def summary(self) -> str:
        n = len(self.calls)
        typical = "" if math.isnan(self.cost_typical) else f", typical {format_cost(self.cost_typical)}"
        fallbacks = sum(c.tokens_from == "byte bound" for c in self.calls)
        parts = [
            f"{n} call{'s' if n != 1 else ''} · {self.input_tokens:,} input tokens",
            f"{format_cost(self.cost_min)} to {format_cost(self.cost_max)}{typical}",
            f"batch {format_cost(self.total('batch_min'))} to {format_cost(self.total('batch_max'))}",
        ]
        if self.cached:
            parts.append(f"{self.cached} cached (free)")
        if fallbacks:
            parts.append(f"{fallbacks} not counted (byte bound used)")
        parts.append(f"{self.requests_sent} count_tokens request{'s' if self.requests_sent != 1 else ''}")
        return " · ".join(parts)

    def _repr_html_(self) -> str:
        frame = self.to_frame()
        notes = "".join(f"<br><small>{html.escape(n)}</small>" for n in self.notes)
        # &#36; rather than "$": JupyterLab would typeset a pair of dollar signs as LaTeX.
        summary = html.escape(self.summary()).replace("$", "&#36;")
        table = frame.to_html(max_rows=50, index=False).replace("$", "&#36;")
        return f"<div><b>Cost preview</b> — {summary}{notes}</div>{table}"

    def __repr__(self) -> str:
        return f"<CostEstimate {self.summary()}>"


def _typical_output(orch: AsyncAgentOrchestrator, agent: str, model: str) -> float:
    """The median output tokens of this session's answered (not cached) runs of `agent` on `model`."""
    seen = [
        r.output_tokens
        for r in orch.runs
        if r.agent == agent and r.model == model and r.status == "succeeded" and not r.cached
    ]
    return float(statistics.median(seen)) if seen else math.nan


def _row(
    index: int,
    plan: Plan | None,
    tokens_from: str,
    note: str,
    *,
    agent: str = "?",
    input_tokens: int | None = None,
    typical_out: float = math.nan,
    costs: tuple[float, float, float] = (0.0, 0.0, 0.0),
    keep: float = 1.0,
    saved: float = 0.0,
) -> CallEstimate:
    """One preview row; `costs` are (min, typical, max) interactive dollars, `keep` the batch fraction."""
    low, typical, high = costs
    return CallEstimate(
        index=index,
        agent=plan.call.agent if plan is not None else agent,
        model=plan.request.model if plan is not None else "",
        tokens_from=tokens_from,
        input_tokens=input_tokens,
        max_tokens=plan.request.max_tokens if plan is not None else 0,
        typical_output_tokens=typical_out,
        cost_min=low,
        cost_typical=typical,
        cost_max=high,
        batch_min=low * keep,
        batch_typical=typical * keep,
        batch_max=high * keep,
        cost_saved=saved,
        note=note,
    )


def _priced(
    orch: AsyncAgentOrchestrator, index: int, plan: Plan, tokens: int, tokens_from: str, note: str
) -> CallEstimate:
    """A row for a call that would be sent: input as counted, output from 0 to max_tokens."""
    request, card = plan.request, orch.rate_card
    typical_out = _typical_output(orch, plan.call.agent, request.model)
    price = card.lookup(request.model)
    if price is None:
        near = card.closest(request.model)
        hint = f"; closest known: {', '.join(near)}" if near else ""
        why = f"{request.model} is not in the rate card (unpriced){hint}"
        nan = (math.nan, math.nan, math.nan)
        return _row(
            index,
            plan,
            tokens_from,
            "; ".join(filter(None, [note, why])),
            input_tokens=tokens,
            typical_out=typical_out,
            costs=nan,
        )
    rates = price.rates_for(tokens)
    dearest_in = rates.input
    if request.cache_system:
        dearest_in = max(
            dearest_in, rates.cache_write_1h if request.cache_ttl == "1h" else rates.cache_write_5m
        )
    cost_min = tokens * rates.input / 1e6
    cost_max = (tokens * dearest_in + request.max_tokens * rates.output) / 1e6
    cost_typical = cost_min + typical_out * rates.output / 1e6
    return _row(
        index,
        plan,
        tokens_from,
        note,
        input_tokens=tokens,
        typical_out=typical_out,
        costs=(cost_min, cost_typical, cost_max),
        keep=1.0 - card.batch_discount,
    )


async def estimate_calls(
    orch: AsyncAgentOrchestrator,
    calls: Iterable[tuple[str, str] | CallSpec | Mapping[str, Any]],
    *,
    notes: Sequence[str] = (),
) -> CostEstimate:
    """Preview `calls` (the items `execute_multiple` takes) without running any; see the module docstring."""
    counter = orch.token_counter
    sent_before = counter.requests_sent
    batch_id = new_run_id()
    rows: dict[int, CallEstimate] = {}
    to_count: list[tuple[int, Plan]] = []
    cache = orch.cache
    for index, item in enumerate(calls):
        spec = as_call(item, use_cache=True, refresh=False, batch_id=batch_id)
        if isinstance(spec, BaseException):
            rows[index] = _row(index, None, "invalid", f"would not run: {spec}")
            continue
        try:
            plan = orch._plan(spec)
        except (ConfigError, ValueError, TypeError) as exc:
            rows[index] = _row(index, None, "invalid", f"would not run: {exc}", agent=spec.agent)
            continue
        use_cache = cache is not None and spec.use_cache and not cache.excludes(spec.agent)
        if cache is not None and use_cache and not spec.refresh:
            hit = await cache.aget(plan.request, agent=spec.agent)
            if hit is not None:
                rows[index] = _row(
                    index, plan, "response cache", "answered from the cache", saved=hit.cost_usd
                )
                continue
            if cache.replay:
                rows[index] = _row(index, plan, "replay miss", "replay mode: not in the cache; would fail")
                continue
        life = orch.rate_card.lifecycle(plan.request.model)
        if life is not None and life.status == "retired" and not orch.allow_retired:
            rows[index] = _row(index, plan, "retired", f"would be refused: {life.message()}")
            continue
        known = counter.known(plan.request)
        if known is not None:  # counted by an earlier preview: no task, no request
            rows[index] = _priced(orch, index, plan, known, "count_tokens", "")
        else:
            to_count.append((index, plan))
    if to_count:
        backend = orch.backend()
        if not callable(getattr(backend, "count_tokens", None)):
            outcomes: list[int | BaseException] = [
                ConfigError("this backend cannot count tokens") for _ in to_count
            ]
        else:
            outcomes = await asyncio.gather(
                *(counter.count(backend, plan.request) for _, plan in to_count), return_exceptions=True
            )
        for (index, plan), outcome in zip(to_count, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                bound = worst_case_prompt_tokens(plan.request)
                why = f"count_tokens failed ({outcome}); the byte upper bound is used"
                rows[index] = _priced(orch, index, plan, bound, "byte bound", why)
            else:
                rows[index] = _priced(orch, index, plan, outcome, "count_tokens", "")
    return CostEstimate(
        [rows[i] for i in sorted(rows)], requests_sent=counter.requests_sent - sent_before, notes=tuple(notes)
    )
