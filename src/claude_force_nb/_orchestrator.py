"""`AsyncAgentOrchestrator`: the only place that schedules, retries, times out and records calls.

A call goes: resolve the agent and build the request (pure) -> record it as queued -> response cache (a hit
ends here, as a row like any other) -> wait for a concurrency slot -> reserve the attempt's worst-case cost
against the budget (waiting while calls in flight hold what it needs) and book its share of the rate limits
(a shared budget does both in one round trip to Redis) -> one attempt
through the backend under a per-attempt deadline -> on a retryable failure, release the slot, back off
(honouring `retry-after`) and try again -> settle the cost, store the answer in the cache, finish the record,
emit the event.

Everything runs on one event loop (in a notebook, the kernel's), so the budget, limiter and records need no
locks. Cancellation at any await marks the call cancelled, settles its reservation and re-raises, so a
cancelled batch keeps every result that had already finished in `orch.runs`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from ._agents import (
    AgentConfig,
    AgentSpec,
    describe_unknown,
    inline_agent,
    inline_agents,
    load_config,
    validate_agent_name,
)
from ._backends import Backend, TextCallback, being_cancelled
from ._calls import (
    CallSpec,
    Plan,
    as_call,
    check_max_tokens,
    pacing_input_tokens,
    plan_call,
    preview,
    worst_case_prompt_tokens,
)
from ._config import (
    DEFAULT_CACHE_BACKEND,
    DEFAULT_CACHE_MAX_SIZE_MB,
    DEFAULT_CACHE_TIMEOUT_S,
    DEFAULT_CACHE_TTL_HOURS,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT_S,
    read_environment,
)
from ._estimate import CostEstimate, TokenCounter, counted_prompt_bound, estimate_calls
from ._events import EventBus
from ._exceptions import (
    APICallError,
    AttemptTimeoutError,
    BackendError,
    BudgetExceededError,
    CacheMiss,
    ClaudeForceError,
    ConfigError,
    CoordinationError,
    RetiredModelError,
    UnknownAgentError,
)
from ._limits import DEFAULT_BURST_S, Budget, Pace, PrioritySlots, RateLimiter, Reservation
from ._pricing import LifecycleNotices, RateCard
from ._records import AttemptSpan, RunLog, RunRecord, RunStatus, new_run_id
from ._request import ChatMessage, Completion, MessageRequest
from ._results import AgentResult, WorkflowResult
from ._retry import DEFAULT_MAX_RETRIES, RetryPolicy, backoff_delay
from ._validate import check_bool, check_int, check_number, check_text, shorten

if TYPE_CHECKING:
    from ._batch import BatchJob
    from ._batch_registry import RegisteredJob
    from ._cache import CacheHit, ResponseCache
    from ._coord import Coordination

__all__ = ["AsyncAgentOrchestrator"]

log = logging.getLogger("claude_force_nb")

IndexedTextCallback = Callable[[int, str], None]
ResultCallback = Callable[[int, AgentResult], None]
"""`on_text` of a batch or workflow: called with the call's (or step's) index and each text delta."""

_PLACEHOLDER_KEY = "no-key-needed"  # sent to a base_url endpoint (simulator, proxy) when no key is set


class AsyncAgentOrchestrator:
    """Runs agent calls concurrently with a concurrency limit, per-attempt timeouts, retries, a budget, rate
    limits, a response cache and a run log. Use it as an async context manager, or call `aclose()`.

    Arguments left as None come from the environment (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`) or the
    package defaults. `cache=` takes a ready `ResponseCache`; otherwise `enable_cache` builds one from the
    `cache_*` arguments (default: the disk tier under the user's cache dir; `cache_timeout_s` bounds each
    lookup and store, and a cache that is broken, failing or late is skipped with one warning).
    `replay=True` serves only from the cache and turns a miss into a `CacheMiss` failure, sending nothing.
    """

    def __init__(
        self,
        config_path: str | Path | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        timeout_seconds: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_policy: RetryPolicy | None = None,
        enable_cache: bool = True,
        cache: ResponseCache | None = None,
        cache_backend: str = DEFAULT_CACHE_BACKEND,
        cache_dir: str | Path | None = None,
        cache_ttl_hours: float = DEFAULT_CACHE_TTL_HOURS,
        cache_max_size_mb: float = DEFAULT_CACHE_MAX_SIZE_MB,
        cache_timeout_s: float = DEFAULT_CACHE_TIMEOUT_S,
        replay: bool = False,
        enable_tracking: bool = True,
        run_log: RunLog | None = None,
        budget_usd: float | None = None,
        requests_per_minute: float | None = None,
        input_tokens_per_minute: float | None = None,
        output_tokens_per_minute: float | None = None,
        pricing: RateCard | Mapping[str, Any] | str | Path | None = None,
        allow_retired: bool = False,
        count_tokens_per_minute: float | None = None,
        notices: LifecycleNotices | None = None,
        prompt_caching: bool = True,
        prompt_cache_ttl: str = "5m",
        coordination: str | Coordination | None = None,
        scope: str | None = None,
        coordination_failure: str | None = None,
        owner: str | None = None,
        rate_limit_burst_s: float = DEFAULT_BURST_S,
        learn_rate_limits: bool = True,
        backend: Backend | None = None,
        config: AgentConfig | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        check_text("model", model)
        max_tokens = check_max_tokens(max_tokens)
        max_concurrent = check_int("max_concurrent", max_concurrent, minimum=1)
        timeout_seconds = check_number("timeout_seconds", timeout_seconds, above=0, unit="seconds")
        max_retries = check_int("max_retries", max_retries, minimum=0)
        check_number("cache_ttl_hours", cache_ttl_hours, above=0, unit="hours")
        check_number("cache_max_size_mb", cache_max_size_mb, above=0, unit="MB")
        check_number("cache_timeout_s", cache_timeout_s, above=0, unit="seconds")
        if count_tokens_per_minute is not None:
            check_number("count_tokens_per_minute", count_tokens_per_minute, above=0)
        if prompt_cache_ttl not in ("5m", "1h"):
            raise ConfigError(f"prompt_cache_ttl must be '5m' or '1h', got {shorten(prompt_cache_ttl)}")
        for flag, value in (
            ("enable_cache", enable_cache),
            ("replay", replay),
            ("prompt_caching", prompt_caching),
        ):
            check_bool(flag, value)
        env = read_environment(environ)
        self.config = (
            config
            if config is not None
            else (load_config(config_path) if config_path else AgentConfig.empty())
        )
        self.model = model
        self.max_tokens = max_tokens
        self.max_concurrent = max_concurrent
        self.timeout_seconds = float(timeout_seconds)
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self.rate_card = _rate_card(pricing)
        self.allow_retired = allow_retired
        self.notices = notices if notices is not None else LifecycleNotices()
        self.token_counter = TokenCounter(
            requests_per_minute=count_tokens_per_minute,
            retry_policy=self.retry_policy,
            max_concurrent=max_concurrent,
            timeout_s=self.timeout_seconds,
        )
        self.prompt_caching = prompt_caching
        self.prompt_cache_ttl = prompt_cache_ttl
        self.enable_tracking = enable_tracking
        self.runs = run_log if run_log is not None else RunLog()
        self.events = EventBus()
        url = coordination if coordination is not None else env.coordination
        self.coordination: Coordination | None = None
        self._owns_coordination = False
        limits: dict[str, Any] = {
            "requests_per_minute": requests_per_minute,
            "input_tokens_per_minute": input_tokens_per_minute,
            "output_tokens_per_minute": output_tokens_per_minute,
            "burst_s": rate_limit_burst_s,
            "learn_limits": learn_rate_limits,
        }
        if url is None:
            if scope is not None or coordination_failure is not None:
                raise ConfigError("scope= and coordination_failure= need coordination= (a redis:// URL)")
            self.budget: Budget = Budget(budget_usd)
            self.limiter: RateLimiter = RateLimiter(**limits)
        else:
            from ._coord import DEFAULT_SCOPE, Coordination, SharedBudget, SharedRateLimiter

            if isinstance(url, Coordination):
                self.coordination = url
            else:
                self.coordination = Coordination(
                    url,
                    scope=DEFAULT_SCOPE if scope is None else scope,
                    failure=coordination_failure,
                    owner=owner,
                )
                self._owns_coordination = True
            self.budget = SharedBudget(budget_usd, self.coordination)
            self.limiter = SharedRateLimiter(self.coordination, **limits)
        self._input_scale = 1.0  # the largest ratio of the API's input count to our estimate seen so far
        self._data_dir = env.data_dir  # where the registry of Message Batches lives
        self._batch_jobs: weakref.WeakValueDictionary[str, BatchJob] = weakref.WeakValueDictionary()
        self._api_key = api_key if api_key is not None else env.api_key
        self._base_url = base_url if base_url is not None else env.base_url
        self._backend: Backend | None = backend
        self._owns_backend = backend is None
        self._slots = PrioritySlots(max_concurrent)
        self._random = random.Random()
        self._owns_cache = False
        self.cache: ResponseCache | None = cache
        if cache is None and enable_cache:
            from ._cache import ResponseCache

            self.cache = ResponseCache(
                backend=cache_backend,
                cache_dir=cache_dir,
                ttl_hours=cache_ttl_hours,
                max_size_mb=cache_max_size_mb,
                timeout_s=cache_timeout_s,  # a broken or slow cache means "no cache", never a failed call
                environ=environ,
            )
            self._owns_cache = True
        if replay:
            if self.cache is None:
                raise ConfigError("replay=True needs a response cache (enable_cache=True or cache=...)")
            self.cache.replay = True
        self._closed = False
        self._active = 0  # calls in progress (queued, waiting, in flight)
        self._idle = asyncio.Event()
        self._idle.set()
        # Calls in flight by cache key, so identical concurrent calls make one request (see _run).
        self._in_flight: dict[str, asyncio.Future[CacheHit | None]] = {}

    # -- lifecycle -------------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncAgentOrchestrator:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def active_calls(self) -> int:
        """Calls in progress: queued for a slot, waiting, backing off or in flight."""
        return self._active

    async def drain(self) -> None:
        """Wait until no call is in progress (for closing an orchestrator that others may still be using)."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Close the HTTP connections and (if this orchestrator built it) the response cache."""
        self._closed = True
        if self._backend is not None and self._owns_backend:
            await self._backend.aclose()
            self._backend = None
        if self.cache is not None and self._owns_cache:
            await self.cache.aclose()
        if self.coordination is not None and self._owns_coordination:
            await self.coordination.aclose()

    @property
    def replay(self) -> bool:
        return self.cache is not None and self.cache.replay

    @property
    def base_url(self) -> str | None:
        return self._base_url

    def backend(self) -> Backend:
        """The backend, built on first use (so an orchestrator used only in replay mode needs no key)."""
        if self._backend is None:
            if not self._api_key and not self._base_url:
                raise ConfigError(
                    "no API key: set ANTHROPIC_API_KEY, or pass base_url= pointing at the bundled simulator "
                    "(with claude_force_nb.sim.serve() as sim: ... base_url=sim.base_url)"
                )
            from ._backends.anthropic import AnthropicBackend

            backend = AnthropicBackend(
                api_key=self._api_key or _PLACEHOLDER_KEY,
                base_url=self._base_url,
                max_connections=self.max_concurrent,
                timeout_s=self.timeout_seconds,
            )
            backend.client()  # import the SDK (~1 s) now, not inside the first call's timed attempt
            self._backend = backend
        return self._backend

    # -- agents ----------------------------------------------------------------------------------------

    @property
    def agents(self) -> Mapping[str, AgentSpec]:
        """Config agents and inline agents (inline ones win a name clash)."""
        merged = dict(self.config.agents)
        merged.update(inline_agents())
        return MappingProxyType(merged)

    @property
    def workflows(self) -> Mapping[str, tuple[str, ...]]:
        return self.config.workflows

    def agent(self, name: str) -> AgentSpec:
        """The agent called `name`; UnknownAgentError (with close matches) if there is none."""
        validate_agent_name(name)
        spec = inline_agent(name) or self.config.agents.get(name)
        if spec is None:
            raise UnknownAgentError(describe_unknown("agent", name, self.agents, self.config.path))
        return spec

    def build_request(self, call: CallSpec) -> MessageRequest:
        """The exact request a call would send (pure apart from reading the agent's files)."""
        return self._plan(call).request

    def _plan(self, call: CallSpec) -> Plan:
        return plan_call(
            call,
            self.agent(call.agent),
            default_model=self.model,
            default_max_tokens=self.max_tokens,
            rate_card=self.rate_card,
            prompt_caching=self.prompt_caching,
            prompt_cache_ttl=self.prompt_cache_ttl,
        )

    # -- public calls ----------------------------------------------------------------------------------

    async def execute_agent(
        self,
        agent_name: str,
        task: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        use_cache: bool = True,
        refresh: bool = False,
        on_text: TextCallback | None = None,
        system: str | None = None,
        history: Sequence[ChatMessage] = (),
    ) -> AgentResult:
        """Run one agent on one task.

        Returns an AgentResult; a call that fails (after retries), is refused by the budget or misses in
        replay mode comes back with `success=False` and the reason in `errors`. An unknown agent or an invalid
        argument raises at once (UnknownAgentError, ConfigError, ValueError): nothing was attempted.
        With `on_text`, the answer is streamed and `on_text(delta)` is called as text arrives.
        """
        call = CallSpec(
            agent=agent_name,
            task=task,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            use_cache=use_cache,
            refresh=refresh,
            system=system,
            history=tuple(history),
        )
        return await self.run_call(call, on_text=on_text)

    async def run_call(self, call: CallSpec, *, on_text: TextCallback | None = None) -> AgentResult:
        """Run one `CallSpec` (the general form of `execute_agent`)."""
        if self._closed:
            raise ClaudeForceError("this orchestrator is closed")
        plan = self._plan(call)
        return await self._run(plan, on_text)

    async def execute_multiple(
        self,
        calls: Iterable[tuple[str, str] | CallSpec | Mapping[str, Any]],
        *,
        use_cache: bool = True,
        refresh: bool = False,
        on_text: IndexedTextCallback | None = None,
        on_result: ResultCallback | None = None,
    ) -> list[AgentResult]:
        """Run many calls concurrently (up to `max_concurrent` at once); results come back in input order.

        Items are `(agent, task)` pairs, `CallSpec`s, or mappings of CallSpec fields. One bad item (unknown
        agent, invalid name or argument, failure after retries) gives that item a failed result and never
        sinks the rest. Calls are started in agent-priority order (priority 1 first), so under a tight
        concurrency limit the important agents go first. `on_text(index, delta)` streams every call.

        `on_result(index, result)` is called as each item ends, and, if the batch is cancelled, once for each
        call that had started, with its `cancelled` result: so a caller interrupted mid-batch still knows
        which item each result belongs to.
        """
        batch_id = new_run_id()
        specs = [as_call(item, use_cache=use_cache, refresh=refresh, batch_id=batch_id) for item in calls]
        results: list[AgentResult | None] = [None] * len(specs)
        plans: list[tuple[int, Plan]] = []
        for index, spec in enumerate(specs):
            if isinstance(spec, BaseException):
                results[index] = _invalid_result(str(spec), spec, agent="?")
                continue
            try:
                plans.append((index, self._plan(spec)))
            except Exception as exc:  # whatever is wrong with one item, it fails alone
                if not isinstance(exc, (ConfigError, ValueError, TypeError)):
                    log.error("planning call %d of a batch failed unexpectedly", index, exc_info=True)
                results[index] = _invalid_result(str(exc), exc, agent=spec.agent)
        if on_result is not None:
            for index, invalid in enumerate(results):
                if invalid is not None:
                    on_result(index, invalid)
        plans.sort(key=lambda item: item[1].spec.priority)  # stable: equal priorities keep input order
        records: dict[int, RunRecord] = {}

        def stream_for(index: int) -> TextCallback | None:
            return None if on_text is None else (lambda delta: on_text(index, delta))

        async def run(index: int, plan: Plan) -> AgentResult:
            result = await self._run(plan, stream_for(index), on_record=partial(records.__setitem__, index))
            if on_result is not None:
                on_result(index, result)
            return result

        tasks = [asyncio.ensure_future(run(index, plan)) for index, plan in plans]
        try:
            done = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if on_result is not None:
                for (index, plan), task in zip(plans, tasks, strict=True):
                    record = records.get(index)
                    if task.cancelled() and record is not None and record.done:
                        on_result(index, AgentResult.from_record(record, **plan.call.metadata))
            raise
        for (index, _), result in zip(plans, done, strict=True):
            results[index] = result
        return [r for r in results if r is not None]

    async def run_workflow(
        self,
        workflow_name: str,
        task: str,
        *,
        use_cache: bool = True,
        refresh: bool = False,
        on_text: IndexedTextCallback | None = None,
        steps: Sequence[str] | None = None,
        template: CallSpec | None = None,
    ) -> WorkflowResult:
        """Run a workflow's agents in order; each gets the original task and the previous step's output.

        Stops at the first failure and returns the steps that ran. `steps` runs an ad-hoc list of agents
        instead of a configured workflow. `on_text(step_index, delta)` streams every step. `template` carries
        per-call settings (model, max_tokens, temperature, budget, batch_id...) applied to every step.
        """
        if steps is None:
            names = self.config.workflow(workflow_name)
        elif isinstance(steps, str) or not isinstance(steps, Iterable):
            raise ConfigError(f"steps must be a list of agent names, got {shorten(steps)}")
        else:
            names = tuple(steps)
            if not names:
                raise ConfigError(f"workflow {workflow_name!r}: steps is empty; give at least one agent name")
        for name in names:
            self.agent(name)
        base = template or CallSpec(agent=names[0], task=task)
        base = replace(
            base,
            task=task,
            use_cache=use_cache and base.use_cache,
            refresh=refresh or base.refresh,
            workflow=workflow_name,
            batch_id=base.batch_id or new_run_id(),
        )
        results: list[AgentResult] = []
        previous: AgentResult | None = None
        for index, name in enumerate(names):
            call = replace(
                base,
                agent=name,
                previous_output=previous.output if previous is not None else None,
                previous_agent=previous.agent_name if previous is not None else None,
                workflow_step=index,
            )
            stream = None if on_text is None else (lambda delta, i=index: on_text(i, delta))
            previous = await self.run_call(call, on_text=stream)
            results.append(previous)
            if not previous.success:
                break
        return WorkflowResult(workflow_name, names, results)

    # -- Message Batches (the work is in _batch.py) -----------------------------------------------------

    async def submit_batch(
        self, calls: Iterable[tuple[str, str] | CallSpec | Mapping[str, Any]], **options: Any
    ) -> BatchJob:
        """Send calls (items as for `execute_multiple`) through the Message Batches API at batch prices.

        Cache hits never go out (replay mode sends nothing); the budget reserves every miss's worst case at
        batch prices first, or refuses the whole batch before sending; the job is registered so it can be
        collected after a restart, and re-submitting the same calls while that job is open returns it.
        Options: `use_cache`, `refresh`, `max_retries` (resubmissions of retryable errored items),
        `max_requests_per_batch`, `max_bytes_per_batch` (the split limits), `reuse_open`.
        """
        from ._batch_submit import submit_batch

        return await submit_batch(self, calls, **options)

    async def execute_batch(
        self,
        calls: Iterable[tuple[str, str] | CallSpec | Mapping[str, Any]],
        *,
        poll_interval: float | None = None,
        on_progress: Any = None,
        **options: Any,
    ) -> list[AgentResult]:
        """`submit_batch`, then wait and collect: one AgentResult per item, in input order."""
        from ._batch import DEFAULT_POLL_INTERVAL_S

        interval = DEFAULT_POLL_INTERVAL_S if poll_interval is None else poll_interval
        check_number("poll_interval", interval, above=0.0, unit="seconds")  # before anything is submitted
        job = await self.submit_batch(calls, **options)
        results: list[AgentResult] = await job.wait(poll_interval=interval, on_progress=on_progress)
        return results

    async def resume_batch(self, batch_id: str) -> BatchJob:
        """A batch job submitted earlier (this process or another), from the registry: `await job.wait()`."""
        from ._batch_submit import resume_batch

        return await resume_batch(self, batch_id)

    def batch_jobs(self) -> list[RegisteredJob]:
        """Every batch job in the registry (all processes, newest first): ids, state, size, endpoint."""
        from ._batch_submit import list_jobs

        return list_jobs(self)

    async def estimate(self, calls: Iterable[tuple[str, str] | CallSpec | Mapping[str, Any]]) -> CostEstimate:
        """Preview what `calls` would cost without running them (see `claude_force_nb._estimate`): input
        tokens from the API's free count_tokens endpoint, response-cache hits at $0, and a cost range,
        interactive and batch. Counted calls then reserve their counted tokens against a budget."""
        if self._closed:
            raise ClaudeForceError("this orchestrator is closed")
        return await estimate_calls(self, calls)

    # -- the one path every call takes -----------------------------------------------------------------

    async def _run(
        self,
        plan: Plan,
        on_text: TextCallback | None,
        *,
        on_record: Callable[[RunRecord], None] | None = None,
    ) -> AgentResult:
        call, request = plan.call, plan.request
        record = RunRecord.queued(
            call.agent,
            request.model,
            call.task,
            workflow=call.workflow,
            workflow_step=call.workflow_step,
            batch_id=call.batch_id,
        )
        if on_record is not None:
            on_record(record)
        self._track_queued(record)
        events = self.events
        held: list[tuple[Budget, Reservation]] = []  # the current attempt's budget reservations
        cache = self.cache if call.use_cache and self.cache is not None else None
        if cache is not None and cache.excludes(call.agent):
            cache = None
        lead: tuple[str, asyncio.Future[CacheHit | None]] | None = None  # an identical call may follow it
        self._active += 1
        self._idle.clear()
        try:
            if cache is not None and not call.refresh:
                if (
                    not cache.replay and not cache.off
                ):  # a cache that is off serves no hits, shared ones included
                    key = cache.key(request)
                    leader = self._in_flight.get(key)
                    if leader is None:
                        lead = (key, asyncio.get_running_loop().create_future())
                        self._in_flight[key] = lead[1]
                    else:
                        # An identical call is in flight: wait for its answer rather than send another
                        # request (the leader's cancellation or failure is not this call's: it then goes
                        # on alone). Waiting through asyncio.wait never cancels the shared future.
                        await asyncio.wait([leader])
                        shared = leader.result()
                        if shared is not None:
                            cache.count_coalesced_hit(shared.cost_usd, shared.latency_s)
                            return self._served_from_cache(record, call, shared, on_text)
                hit = await self._cache_lookup(cache, request, call.agent)
                if hit is not None:
                    _end_lead(self._in_flight, lead, hit)
                    return self._served_from_cache(record, call, hit, on_text)
                if cache.replay:
                    raise CacheMiss(
                        f"replay mode: no cached answer for agent {call.agent!r} on task "
                        f"{preview(call.task)!r}; run once with replay off to record it, "
                        "or import the bundle that has it",
                        agent=call.agent,
                        task=call.task,
                    )
            self._check_model(request.model)
            completion = await self._attempts(record, call, request, on_text, held, plan.spec.priority)
            cost = self.rate_card.cost(request.model, completion.usage, at=record.started_at)
            _settle(held, cost)
            for budget in (self.budget, call.budget):
                if budget is not None and not budget.enforced:
                    budget.record_unreserved(cost)  # a shared ledger counts every member's spend
            self._apply_completion(record, completion, cost=cost)
            self._finish(record, "succeeded")
            if lead is not None:
                from ._cache import CacheHit

                answer = CacheHit(
                    key=lead[0],
                    completion=completion,
                    cost_usd=cost,
                    latency_s=record.latency_s,
                    created_at=record.finished_at,
                    agent=record.agent,
                )
                _end_lead(self._in_flight, lead, answer)
            if cache is not None and not cache.replay:
                await self._cache_store(cache, request, completion, record)
            events.emit("finished", record)
            cache_key = lead[0] if lead is not None else cache.key(request) if cache is not None else None
            return AgentResult.from_record(
                record, request_id=completion.request_id, cache_key=cache_key, **call.metadata
            )
        except asyncio.CancelledError:
            if record.done:  # cancelled after it finished (while storing the answer): the answer stands
                raise
            # An attempt cancelled in flight may still be billed, so its reservation is kept as spent; a call
            # cancelled while queued or backing off costs nothing.
            self._end_attempt(record, request, held, maybe_billed=_attempt_open(record))
            record.error = "cancelled"
            record.error_type = "CancelledError"
            _close_open_span(record, "cancelled")
            self._finish(record, "cancelled")
            events.emit("cancelled", record)
            raise
        except (BackendError, BudgetExceededError, CacheMiss, ConfigError, CoordinationError) as exc:
            _settle(held, 0.0)
            return self._failed(record, call, exc, refused=isinstance(exc, BudgetExceededError))
        except Exception as exc:  # a custom backend's or a hook's bug: this call fails, the others go on
            if record.done:
                raise
            self._end_attempt(record, request, held, maybe_billed=_attempt_open(record))
            _close_open_span(record, type(exc).__name__)
            log.error("agent call %s failed unexpectedly", record.run_id, exc_info=True)
            return self._failed(record, call, exc, refused=False)
        finally:
            _end_lead(self._in_flight, lead, None)  # failed or cancelled: the followers go on alone
            self._active -= 1
            if not self._active:
                self._idle.set()

    def _track_queued(self, record: RunRecord) -> None:
        """Add a new record to the run log (when tracking) and say it is queued (both call paths)."""
        if self.enable_tracking:
            self.runs.add(record)
        self.events.emit("queued", record)

    def _served_from_cache(
        self, record: RunRecord, call: CallSpec, hit: CacheHit, on_text: TextCallback | None
    ) -> AgentResult:
        """Finish a call answered without a request: from the cache, or by an identical call in flight."""
        completion = hit.completion
        record.cached = True
        record.cost_saved_usd = hit.cost_usd
        self._apply_completion(record, completion, cost=0.0)
        self._finish(record, "cached", started=record.queued_at)
        if on_text is not None and completion.text:
            _deliver(on_text, completion.text)
        self.events.emit("cached", record)
        replayed = self.cache is not None and self.cache.replay
        return AgentResult.from_record(record, cache_key=hit.key, replayed=replayed, **call.metadata)

    def _failed(self, record: RunRecord, call: CallSpec, exc: BaseException, *, refused: bool) -> AgentResult:
        record.error = str(exc) if isinstance(exc, ClaudeForceError) else f"{type(exc).__name__}: {exc}"
        record.error_type = type(exc).__name__
        self._finish(record, "refused" if refused else "failed")
        self.events.emit("refused" if refused else "failed", record, error=exc)
        return AgentResult.from_record(record, exception=exc, **call.metadata)

    def _prompt_bound(self, request: MessageRequest) -> int:
        """A budget's bound on the prompt: counted tokens (with a margin) once a preview has counted it,
        else the byte bound."""
        counted = self.token_counter.known(request)
        return (
            worst_case_prompt_tokens(request) if counted is None else counted_prompt_bound(counted, request)
        )

    def _check_model(self, model: str) -> None:
        """Refuse a retired model before sending (unless allowed); say once that a deprecated one retires."""
        life = self.rate_card.lifecycle(model)
        if life is None or life.status in ("active", "legacy"):
            return
        if life.status == "retired" and not self.allow_retired:
            raise RetiredModelError(f"refused before sending: {life.message()}", model=model)
        self.notices.deprecated(life)

    async def _reserve(
        self,
        call: CallSpec,
        request: MessageRequest,
        held: list[tuple[Budget, Reservation]],
        *,
        priority: tuple[int, ...],
        retry: bool = False,
        pace: Pace | None = None,
    ) -> None:
        """Reserve an attempt's worst case on the orchestrator's budget and the call's own, into `held`.

        Each reservation may wait for calls in flight to settle (see `Budget.reserve`); a refusal or a
        cancellation leaves what was already reserved in `held`, which the caller settles at zero. The last
        budget gets the attempt's `pace`: a shared one books it in the same round trip.
        """
        budgets = [b for b in (self.budget, call.budget) if b is not None and b.enforced]
        if not budgets:
            return
        worst = self._worst_case(request)
        for budget in budgets:  # always in this order, so two calls never wait on each other's holds
            # no agent name here: every view of a call's error already names its agent
            label = "retry" if retry else "call"
            if budget is not self.budget:
                label += " (this run's budget)"
            last = budget is budgets[-1]
            reservation = await budget.reserve(
                worst, what=label, priority=priority, pace=pace if last else None
            )
            held.append((budget, reservation))

    def _worst_case(self, request: MessageRequest) -> float:
        """The most an attempt of `request` can cost: what the budget reserves for it."""
        return self.rate_card.worst_case_cost(
            request.model,
            prompt_tokens=self._prompt_bound(request),
            max_tokens=request.max_tokens,
            cache_write_ttl=request.cache_ttl if request.cache_system else None,
        )

    def _end_attempt(
        self,
        record: RunRecord,
        request: MessageRequest,
        held: list[tuple[Budget, Reservation]],
        *,
        maybe_billed: bool,
    ) -> None:
        """Settle a failed or cancelled attempt's reservations.

        An attempt the API may have billed without saying how much (cut off at the deadline or by a cancel,
        perhaps after streaming part of an answer) keeps its worst case as spent, and the record counts the
        same worst case in `cost_usd`, flagged `cost_is_estimate`, so the run log, the displayed cost and
        the budget agree. Any other attempt costs nothing and gives its reservations back.
        """
        if maybe_billed:
            # The amount the budget keeps (every budget held the same worst case); computed when none held.
            kept = max((reservation.amount for _, reservation in held), default=0.0)
            record.cost_usd += kept if kept > 0 else self._worst_case(request)
            record.cost_is_estimate = True
            _settle(held, math.nan)
        else:
            _settle(held, 0.0)

    async def _attempts(
        self,
        record: RunRecord,
        call: CallSpec,
        request: MessageRequest,
        on_text: TextCallback | None,
        held: list[tuple[Budget, Reservation]],
        priority: int,
    ) -> Completion:
        """Attempts until one succeeds, a failure is not retryable, or retries run out.

        Each attempt reserves its worst case when it gets a concurrency slot (into `held`; the caller settles
        the successful one). Reserving at queue time instead would let a long queue hold the whole budget for
        worst cases it never needed; reserving once per call would let retries spend what nobody reserved.
        """
        policy = self.retry_policy
        backend = self.backend()
        events = self.events

        # Stream only for someone who reads the text: streaming costs far more client CPU than one JSON body,
        # and a progress view (which subscribes to everything but "text") has no use for it. Asked per
        # attempt, for this call: a reader may want one call's text only (the panel's selected row).
        def stream(delta: str) -> None:
            if on_text is not None:
                _deliver(on_text, delta)
            events.emit("text", record, text=delta)

        estimate_in = -1  # computed only when a rate limit needs it
        retries = 0
        while True:
            # Retries go before first attempts; first attempts go by agent priority (see PrioritySlots). The
            # same order holds for calls waiting for the budget.
            order = (0 if retries else 1, priority)
            await self._slots.acquire(order)
            probing = False
            try:
                limiter = self.limiter
                # With no probe to wait for, the rate booking can ride with the reservation (a shared budget
                # makes both in one round trip); otherwise it is made once the probe has let this call go.
                pace = self._pace(request, estimate_in) if limiter.ready else None
                await self._reserve(call, request, held, priority=order, retry=retries > 0, pace=pace)
                probing = await limiter.probe()
                if pace is None:
                    pace = self._pace(request, estimate_in)
                if pace is not None:
                    estimate_in = pace.input_tokens  # kept for the retries and the correction after
                    await pace.wait()
                span = AttemptSpan(start=time.time())
                record.spans.append(span)
                record.attempts += 1
                if record.attempts == 1:
                    record.started_at = span.start
                    record.queue_s = span.start - record.queued_at
                record.status = "running"
                events.emit("started", record)
                streamed = stream if on_text is not None or events.wants("text", record) else None
                try:
                    if sys.version_info >= (3, 11):  # the deadline runs in this task, no wrapper task
                        async with asyncio.timeout(self.timeout_seconds):
                            completion = await backend.complete(request, on_text=streamed)
                    else:  # Python 3.10
                        completion = await asyncio.wait_for(
                            backend.complete(request, on_text=streamed), self.timeout_seconds
                        )
                except asyncio.TimeoutError:
                    error: BackendError = AttemptTimeoutError(
                        f"attempt {record.attempts} took longer than timeout_seconds={self.timeout_seconds:g}"
                    )
                except BackendError as exc:
                    if being_cancelled():
                        # The attempt failed because this call is being cancelled (a transport that absorbed
                        # the CancelledError reports a lost connection): a cancellation, not a failure to
                        # record or retry.
                        raise asyncio.CancelledError from exc
                    error = exc
                else:
                    span.end = time.time()
                    span.outcome = "ok"
                    self._paced(request, completion, pace.input_tokens if pace is not None else -1)
                    return completion
            finally:
                self._slots.release()
                if probing:
                    self.limiter.end_probe()
            span.end = time.time()
            span.outcome = type(error).__name__
            # An attempt the API may have billed (abandoned at the deadline, cut off, unreadable) keeps its
            # reservation as spent; one the API answered with an error status cost nothing.
            self._end_attempt(record, request, held, maybe_billed=_maybe_billed(error))
            if not error.retryable or retries >= policy.max_retries:
                raise error
            delay = backoff_delay(retries, policy, retry_after=error.retry_after, rand=self._random.random())
            if getattr(error, "status", None) == 429:
                self.limiter.pause(delay)  # the limit is shared: every call should wait, not just this one
            record.status = "retrying"
            events.emit("retrying", record, delay_s=delay, error=error)
            retries += 1
            await asyncio.sleep(delay)

    # -- pacing ----------------------------------------------------------------------------------------

    def _pace(self, request: MessageRequest, estimate_in: int) -> Pace | None:
        """The attempt's share of the rate limits (`estimate_in` < 0: not estimated yet), or None when
        nothing paces it (no limit, no pause)."""
        limiter = self.limiter
        if not (limiter.enabled or limiter.paused_until > 0):
            return None
        if estimate_in < 0:
            estimate_in = self._pacing_estimate(request)
        return Pace(limiter, estimate_in, request.max_tokens)

    def _pacing_estimate(self, request: MessageRequest) -> int:
        """The input tokens a limiter books: the API's own count when a preview has one, else our estimate
        (the simulator's count) scaled by the largest ratio the API's counts have shown, never below it."""
        counted = self.token_counter.known(request)
        if counted is not None:
            return counted
        return math.ceil(pacing_input_tokens(request) * self._input_scale)

    def _paced(self, request: MessageRequest, completion: Completion, booked_input: int) -> None:
        """After an answer: learn the scale of our estimate and the API's stated limits, give back unused
        output tokens, correct the input tokens booked, and pause if the headers say a limit is nearly
        spent."""
        usage = completion.usage
        prompt = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        estimate = pacing_input_tokens(request)
        if estimate > 0 and prompt > estimate * self._input_scale:
            self._input_scale = prompt / estimate
        limiter = self.limiter
        limiter.learn(completion.rate_limits)
        if booked_input >= 0:
            limiter.give_back_output(request.max_tokens - usage.output_tokens)
            # Prompt-cache reads do not count against the API's input-tokens limit.
            limiter.correct_input(booked_input, usage.input_tokens + usage.cache_creation_input_tokens)
        limiter.observe(completion.rate_limits)

    # -- helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _apply_completion(record: RunRecord, completion: Completion, *, cost: float) -> None:
        usage = completion.usage
        record.input_tokens = usage.input_tokens
        record.output_tokens = usage.output_tokens
        record.cache_creation_input_tokens = usage.cache_creation_input_tokens
        record.cache_read_input_tokens = usage.cache_read_input_tokens
        record.cost_usd += cost  # on top of what earlier attempts that may have been billed count
        record.stop_reason = completion.stop_reason
        record.output = completion.text
        if completion.ttft_s is not None:
            record.ttft_s = completion.ttft_s

    def _finish(self, record: RunRecord, status: RunStatus, *, started: float | None = None) -> None:
        now = time.time()
        record.status = status
        record.finished_at = now
        begin = started if started is not None else record.started_at
        if math.isnan(begin):
            begin = record.queued_at
        if math.isnan(record.started_at):
            record.started_at = begin
        record.latency_s = now - begin
        if self.enable_tracking:
            self.runs.finished(record)

    async def _cache_lookup(
        self, cache: ResponseCache, request: MessageRequest, agent: str
    ) -> CacheHit | None:
        try:
            return await cache.aget(request, agent=agent)
        except Exception:  # a broken cache must not break calls: treat it as a miss, loudly
            log.warning("response cache lookup failed; treating it as a miss", exc_info=True)
            return None

    async def _cache_store(
        self, cache: ResponseCache, request: MessageRequest, completion: Completion, record: RunRecord
    ) -> None:
        try:
            await cache.aput(
                request, completion, agent=record.agent, cost_usd=record.cost_usd, latency_s=record.latency_s
            )
        except Exception:
            log.warning("response cache store failed; the answer is returned but not cached", exc_info=True)

    def __repr__(self) -> str:
        where = self._base_url or "api.anthropic.com"
        return (
            f"AsyncAgentOrchestrator({len(self.agents)} agents, model={self.model!r}, "
            f"max_concurrent={self.max_concurrent}, endpoint={where!r}, runs={len(self.runs)})"
        )


def _rate_card(pricing: RateCard | Mapping[str, Any] | str | Path | None) -> RateCard:
    if pricing is None:
        return RateCard.default()
    if isinstance(pricing, RateCard):
        return pricing
    return RateCard.default().with_overrides(pricing)


def _invalid_result(message: str, exc: BaseException, *, agent: str) -> AgentResult:
    return AgentResult(agent_name=agent, success=False, errors=[message], status="invalid", exception=exc)


def _end_lead(
    in_flight: dict[str, asyncio.Future[CacheHit | None]],
    lead: tuple[str, asyncio.Future[CacheHit | None]] | None,
    answer: CacheHit | None,
) -> None:
    """Hand the leader's answer (None: none) to the calls waiting on it, and stop leading (once)."""
    if lead is None or lead[1].done():
        return
    key, future = lead
    if in_flight.get(key) is future:
        del in_flight[key]
    future.set_result(answer)


def _settle(held: list[tuple[Budget, Reservation]], cost: float) -> None:
    """Settle (cost > 0 or NaN: spent) or release (0) every reservation held, and forget them."""
    for budget, reservation in held:
        if cost == 0.0:
            budget.release(reservation)
        else:
            budget.settle(reservation, cost)
    held.clear()


def _maybe_billed(error: BackendError) -> bool:
    """Whether a failed attempt may still have been billed: the request reached the API and no error status
    came back (a timeout, a cut connection, an unreadable 200, an error event inside a stream)."""
    return not isinstance(error, APICallError) or error.status is None


def _attempt_open(record: RunRecord) -> bool:
    return bool(record.spans) and record.spans[-1].end is None


def _close_open_span(record: RunRecord, outcome: str) -> None:
    if _attempt_open(record):
        record.spans[-1].end = time.time()
        record.spans[-1].outcome = outcome


def _deliver(on_text: TextCallback, text: str) -> None:
    """Call the user's `on_text`; a broken display callback is logged, never allowed to fail the call."""
    try:
        on_text(text)
    except Exception:
        log.exception("on_text callback failed")
