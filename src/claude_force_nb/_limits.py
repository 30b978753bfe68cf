"""Spending and pacing: the budget's reservations, and client-side rate limits.

Both live on the event loop's thread (the orchestrator's only thread), so they need no locks: every method
runs between two awaits.

**Budget.** Before a call is sent, its worst-case cost (every prompt token at the dearest input rate it could
be billed at, plus `max_tokens` of output) is reserved. A reservation that fits only once calls in flight
settle waits for them; one that cannot fit even then is refused and the call never sent. When the call ends
the reservation is replaced by the real cost, which can only be smaller, so `spent <= spent + reserved <=
limit` holds at every moment.

**Rate limits.** One smooth limit (GCRA) per configured or learned per-minute limit (requests, input tokens,
output tokens), letting at most `burst_s` worth through at once, as the API's own limiter enforces its
per-minute figures over short intervals. Input tokens are booked at an estimate that is never below the API's
count (see `_calls.pacing_input_tokens`) and corrected when the answer says what was counted; output tokens
are booked at `max_tokens`, as the API estimates them, and the unused part is given back. Separately, a
shared *pause* holds back every new attempt: after a 429 (for the server's `retry-after`) and when the
`anthropic-ratelimit-*-remaining` headers say a limit is nearly spent, so a crowd of calls does not run into
the wall together. With coordination (`_coord`), the same arithmetic runs on a Redis server for many
processes at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ._exceptions import BudgetExceededError
from ._pricing import format_cost
from ._request import RateLimitSnapshot
from ._validate import check_number

__all__ = [
    "DEFAULT_BURST_S",
    "NEARLY_SPENT_FRACTION",
    "Budget",
    "Pace",
    "PrioritySlots",
    "RateLimiter",
    "Reservation",
    "SmoothLimit",
    "nearly_spent_pause",
]

NEARLY_SPENT_FRACTION = 0.05
"""A server limit with less than this fraction left counts as nearly spent."""
_MAX_HEADER_PAUSE_S = 60.0
_PROBE_WAIT_S = 30.0  # the longest the rest of a fan-out waits for the first answer's rate-limit headers
_EPSILON = 1e-12  # float slack when comparing dollar sums with the limit


@dataclass(slots=True)
class Reservation:
    amount: float
    open: bool = True


@dataclass(slots=True)
class Pace:
    """An attempt's share of the rate limits. A shared budget books it in the same round trip as the
    reservation (`booked_wait_s` is then the wait it asked); otherwise `wait` books it on the limiter."""

    limiter: RateLimiter
    input_tokens: int
    output_tokens: int
    booked_wait_s: float | None = None

    async def wait(self) -> None:
        """Book (unless already booked) and wait for the moment the limits allow the attempt."""
        if self.booked_wait_s is None:
            await self.limiter.acquire(input_tokens=self.input_tokens, output_tokens=self.output_tokens)
        else:
            await self.limiter.wait_booked(self.booked_wait_s)


@dataclass(slots=True)
class _BudgetWaiter:
    amount: float
    what: str
    future: asyncio.Future[Reservation]


def _check_limit(limit_usd: float | None) -> float | None:
    return None if limit_usd is None else check_number("budget_usd", limit_usd, minimum=0.0, unit="dollars")


class Budget:
    """A spending cap in dollars, enforced by reserving each call's worst case before it is sent.

    The interface is three calls: `await reserve(worst_case)` (may wait), `settle(reservation, cost)` and
    `release(reservation)`. A worst case that does not fit beside the reservations held now, but would fit
    once calls in flight settle, *waits* for them (by priority, then arrival; cancellable) instead of being
    refused, so a crowd of concurrent calls does not get turned away while most of the budget is only held.
    It is refused only when it cannot fit even if every hold settled at zero (`spent + worst > limit`).
    Waiters are served strictly in order, so a big call at the head is not starved by small ones behind it.
    """

    def __init__(self, limit_usd: float | None) -> None:
        self._limit_usd = _check_limit(limit_usd)
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self._waiters: list[tuple[tuple[int, ...], int, _BudgetWaiter]] = []
        self._live = 0  # waiters not yet served or cancelled (the heap may still hold cancelled ones)
        self._arrivals = itertools.count()

    @property
    def limit_usd(self) -> float | None:
        return self._limit_usd

    @limit_usd.setter
    def limit_usd(self, value: float | None) -> None:
        """A new limit applies to waiting calls at once (a raised one lets them go, a lowered one may
        refuse them); money spent and reservations held stay."""
        self._limit_usd = _check_limit(value)
        self._serve_waiters()

    @property
    def enforced(self) -> bool:
        """Whether calls reserve on this budget: only when it has a limit."""
        return self._limit_usd is not None

    def record_unreserved(self, cost_usd: float) -> None:
        """A call that reserved nothing (no limit) cost this much. An in-process budget without a limit keeps
        no account; a shared one adds it to the team's ledger, so members with a limit count it."""

    @property
    def remaining_usd(self) -> float:
        if self.limit_usd is None:
            return math.inf
        return max(self.limit_usd - self.spent_usd - self.reserved_usd, 0.0)

    @property
    def waiting(self) -> int:
        """Calls waiting for reservations in flight to settle."""
        return self._live

    async def reserve(
        self,
        worst_case_usd: float,
        *,
        what: str,
        priority: tuple[int, ...] = (0,),
        pace: Pace | None = None,
        lease_s: float | None = None,
    ) -> Reservation:
        """Hold `worst_case_usd` for a call, waiting while it would fit only once holds settle.

        `pace` is the attempt's rate booking, which a shared budget makes in the same round trip; an
        in-process one leaves it to `pace.wait()`. `lease_s` matters to a shared budget only (see
        `SharedBudget.reserve`).

        Raises BudgetExceededError, holding nothing, when it cannot fit even if every hold settled at zero
        (at once, or later if money spent while it waited makes it so). Cancelling the wait holds nothing.
        """
        limit = self.limit_usd
        if limit is None:
            return Reservation(0.0)
        if math.isnan(worst_case_usd):
            raise BudgetExceededError(
                f"{what} refused: the model is not in the rate card, so its cost cannot be bounded and a "
                "budget cannot be enforced; add its prices (pricing=...) or run without budget_usd"
            )
        if self.spent_usd + worst_case_usd > limit + _EPSILON:
            raise self._refusal(worst_case_usd, what)
        if not self._live and self.spent_usd + self.reserved_usd + worst_case_usd <= limit + _EPSILON:
            self.reserved_usd += worst_case_usd
            return Reservation(worst_case_usd)
        future: asyncio.Future[Reservation] = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._waiters, (priority, next(self._arrivals), _BudgetWaiter(worst_case_usd, what, future))
        )
        self._live += 1
        self._serve_waiters()
        try:
            return await future
        except asyncio.CancelledError:
            if not future.cancelled():  # served just as it was cancelled: give a grant back
                if future.exception() is None:
                    self.release(future.result())
            else:
                self._live -= 1
            self._serve_waiters()  # a cancelled head no longer blocks the ones behind it
            raise

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace a reservation by the real cost (NaN counts as the whole reservation)."""
        if not reservation.open:
            return
        reservation.open = False
        # Below the comparisons' slack, what is left is float noise from adding and removing holds: drop it,
        # so the budget reads exactly 0 held once every hold has settled.
        left = self.reserved_usd - reservation.amount
        self.reserved_usd = left if left > _EPSILON else 0.0
        self.spent_usd += reservation.amount if math.isnan(actual_usd) else actual_usd
        self._serve_waiters()

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back: the call was never sent."""
        self.settle(reservation, 0.0)

    def _serve_waiters(self) -> None:
        """Grant waiters in order while the head fits; refuse a head that can no longer fit at all."""
        waiters = self._waiters
        while waiters:
            waiter = waiters[0][2]
            if waiter.future.done():  # cancelled while waiting
                heapq.heappop(waiters)
                continue
            limit = self.limit_usd
            if limit is None:
                grant = Reservation(0.0)
            elif self.spent_usd + waiter.amount > limit + _EPSILON:
                heapq.heappop(waiters)
                self._live -= 1
                waiter.future.set_exception(self._refusal(waiter.amount, waiter.what))
                continue
            elif self.spent_usd + self.reserved_usd + waiter.amount > limit + _EPSILON:
                return  # it fits once holds settle: wait for the next settle
            else:
                self.reserved_usd += waiter.amount
                grant = Reservation(waiter.amount)
            heapq.heappop(waiters)
            self._live -= 1
            waiter.future.set_result(grant)

    def _refusal(self, worst_case_usd: float, what: str) -> BudgetExceededError:
        limit = self.limit_usd or 0.0
        return BudgetExceededError(
            f"{what} refused before sending: its worst case {format_cost(worst_case_usd)} exceeds the "
            f"{format_cost(max(limit - self.spent_usd, 0.0))} left of the {format_cost(limit)} budget"
            f"{self._shared_by} even once the calls in flight settle (spent {format_cost(self.spent_usd)}, "
            f"{format_cost(self.reserved_usd)} held by calls in flight)"
        )

    _shared_by = ""  # who else spends from this budget, for messages (a shared budget names its scope)

    def __repr__(self) -> str:
        limit = "none" if self.limit_usd is None else format_cost(self.limit_usd)
        return f"Budget(limit={limit}, spent=${self.spent_usd:.4f}, reserved=${self.reserved_usd:.4f})"


DEFAULT_BURST_S = 0.5
"""How much a client-side limit lets through at once: half a second's worth of its per-minute rate. The API
enforces its per-minute limits over short intervals (about a second's burst), so a client must not send a
whole minute's allowance at once; the other half second absorbs network jitter between client and server."""


class SmoothLimit:
    """One per-minute limit paced smoothly: GCRA (the generic cell rate algorithm), weighted by cost.

    It keeps one number, the theoretical arrival time `tat`: when the limit would be back to full if nothing
    else were sent. A cost `c` may go at `t` once `max(tat, t) + c*T - t <= B`, where `T` is the time one unit
    is worth (60 / per_minute seconds) and `B` the burst tolerance (`burst_s`, or the cost's own time if that
    is larger: a request bigger than the burst goes when the limit is full rather than never). Compared with
    a bucket that starts full of a minute's allowance, this never lets more than `burst_s` worth out at once.
    `book` takes a slot and says how long to wait for it, so waiters are served in arrival order with no
    polling. The shared limiter runs the same arithmetic in Lua on the Redis server (see `_coord`).
    """

    def __init__(self, per_minute: float, *, burst_s: float = DEFAULT_BURST_S) -> None:
        if not per_minute > 0 or not math.isfinite(per_minute):
            raise ValueError(f"a per-minute limit must be a positive number, got {per_minute}")
        if not burst_s > 0:
            raise ValueError(f"burst_s must be positive, got {burst_s}")
        self.per_minute = float(per_minute)
        self.interval = 60.0 / self.per_minute  # seconds one unit is worth
        self.burst_s = float(burst_s)
        self.tat = -math.inf

    def allowed_at(self, cost: float, *, now: float) -> float:
        """The earliest time a cost could go (>= now), without taking it."""
        span = cost * self.interval
        tolerance = max(self.burst_s, span)
        return max(now, self.tat + span - tolerance)

    def book(self, cost: float, *, at: float) -> None:
        """Take `cost` at time `at` (which must be >= allowed_at(cost))."""
        self.tat = max(self.tat, at) + cost * self.interval

    def give_back(self, amount: float, *, now: float) -> None:
        """Return unused units (never more than a full limit's worth)."""
        self.tat = max(self.tat - amount * self.interval, now - self.burst_s)

    def charge(self, amount: float, *, now: float) -> None:
        """Take units after the fact (the API counted more than was booked)."""
        self.tat = max(self.tat, now - self.burst_s) + amount * self.interval


_KINDS = ("requests", "input-tokens", "output-tokens")


class RateLimiter:
    """Client-side pacing: a smooth limit per configured (or learned) per-minute rate, plus a shared pause.

    `acquire` books every limit's share for the earliest moment all of them allow, then sleeps until then.
    With no limit configured, `learn` takes the limits the API states in its `anthropic-ratelimit-*-limit`
    headers (`learned` says which), so a large fan-out paces to the org's limits without the user knowing
    their tier. Estimates of a request's input tokens are corrected once the answer says what was counted
    (`correct_input`), and unused output tokens are given back.
    """

    def __init__(
        self,
        *,
        requests_per_minute: float | None = None,
        input_tokens_per_minute: float | None = None,
        output_tokens_per_minute: float | None = None,
        burst_s: float = DEFAULT_BURST_S,
        learn_limits: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.burst_s = check_number("rate_limit_burst_s", burst_s, above=0.0)
        self.learn_limits = learn_limits
        self.limits: dict[str, SmoothLimit] = {}
        for kind, name, per_minute in (
            ("requests", "requests_per_minute", requests_per_minute),
            ("input-tokens", "input_tokens_per_minute", input_tokens_per_minute),
            ("output-tokens", "output_tokens_per_minute", output_tokens_per_minute),
        ):
            if per_minute is not None:
                self.limits[kind] = SmoothLimit(check_number(name, per_minute, above=0.0), burst_s=burst_s)
        self.configured = frozenset(self.limits)
        self.learned: dict[str, float] = {}
        self._probe: asyncio.Future[None] | None = None  # the first attempt's answer, when limits are learned
        self._probed = False
        self.paused_until = 0.0
        self.waited_s = 0.0

    @property
    def requests(self) -> SmoothLimit | None:
        return self.limits.get("requests")

    @property
    def input_tokens(self) -> SmoothLimit | None:
        return self.limits.get("input-tokens")

    @property
    def output_tokens(self) -> SmoothLimit | None:
        return self.limits.get("output-tokens")

    @property
    def enabled(self) -> bool:
        return bool(self.limits)

    def pause(self, seconds: float) -> None:
        """Hold back every new attempt for `seconds` (extends, never shortens, a pause in force)."""
        if seconds > 0:
            self.paused_until = max(self.paused_until, self._clock() + seconds)

    def _costs(self, input_tokens: int, output_tokens: int) -> dict[str, float]:
        return {"requests": 1.0, "input-tokens": float(input_tokens), "output-tokens": float(output_tokens)}

    async def acquire(self, *, input_tokens: int, output_tokens: int) -> None:
        """Book every limit's share for the earliest moment they all allow it, then wait until then."""
        costs = self._costs(input_tokens, output_tokens)
        now = self._clock()
        go = max(now, self.paused_until)
        for kind, limit in self.limits.items():
            go = max(go, limit.allowed_at(costs[kind], now=now))
        for kind, limit in self.limits.items():
            limit.book(costs[kind], at=go)
        await self._wait_until(go)

    async def wait_booked(self, seconds: float) -> None:
        """Wait out a booking made elsewhere (a shared one, in the budget's round trip)."""
        await self._wait_until(self._clock() + seconds)

    async def _wait_until(self, go: float) -> None:
        while (wait := max(go, self.paused_until) - self._clock()) > 0:  # a pause set meanwhile also holds
            self.waited_s += wait
            await self._sleep(wait)

    @property
    def ready(self) -> bool:
        """Whether `probe()` would let an attempt go at once (no limits left to learn first)."""
        return self._probed or not self.learn_limits or bool(self.limits)

    async def probe(self) -> bool:
        """With limits to learn and none known, the first attempt goes alone and the others wait for its
        answer (at most `_PROBE_WAIT_S`): its headers state the limits, so a large fan-out starts paced
        instead of as one burst into the API's limiter. Costs one call's latency, once per limiter. Returns
        True for the probe itself, which must call `end_probe()` when its attempt ends."""
        if self.ready:
            return False
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_future()
            return True
        await asyncio.wait([self._probe], timeout=_PROBE_WAIT_S)
        return False

    def end_probe(self) -> None:
        """The probe's attempt ended (answered or not): let the others go."""
        self._probed = True
        if self._probe is not None and not self._probe.done():
            self._probe.set_result(None)

    def give_back_output(self, unused_tokens: int) -> None:
        limit = self.output_tokens
        if limit is not None and unused_tokens > 0:
            limit.give_back(float(unused_tokens), now=self._clock())

    def correct_input(self, estimated: int, counted: int) -> None:
        """The answer says the API counted `counted` input tokens where `estimated` were booked."""
        limit = self.input_tokens
        if limit is None or counted == estimated:
            return
        if counted > estimated:
            limit.charge(float(counted - estimated), now=self._clock())
        else:
            limit.give_back(float(estimated - counted), now=self._clock())

    def learn(self, snapshot: RateLimitSnapshot | None) -> dict[str, float]:
        """Pace to the limits an answer's headers state, for each kind not configured; returns new ones."""
        if snapshot is None or not self.learn_limits:
            return {}
        new: dict[str, float] = {}
        for kind in _KINDS:
            stated = snapshot.limit.get(kind)
            if kind in self.configured or not stated or stated <= 0:
                continue
            if self.learned.get(kind) != stated:
                self.learned[kind] = float(stated)
                new[kind] = float(stated)
                self.limits[kind] = SmoothLimit(float(stated), burst_s=self.burst_s)
        return new

    def observe(self, snapshot: RateLimitSnapshot | None) -> float:
        """Pause new attempts if the server says a limit is nearly spent; returns the pause set (seconds).

        The pause is the time the server's limiter needs to refill back to the threshold, assuming it
        refills continuously over a minute (as Anthropic's does), and never past the advertised reset.
        """
        pause = nearly_spent_pause(snapshot)
        self.pause(pause)
        return pause


def nearly_spent_pause(snapshot: RateLimitSnapshot | None) -> float:
    """How long to hold back new attempts when a response's headers say a limit is nearly spent."""
    if snapshot is None:
        return 0.0
    pause = 0.0
    for kind, remaining in snapshot.remaining.items():
        limit = snapshot.limit.get(kind)
        if not limit or limit <= 0:
            continue
        threshold = max(1.0, NEARLY_SPENT_FRACTION * limit)
        if remaining >= threshold:
            continue
        refill = (threshold - remaining) / (limit / 60.0)
        reset = snapshot.reset_in_s.get(kind)
        if reset is not None and reset >= 0:
            refill = min(refill, reset)
        pause = max(pause, min(refill, _MAX_HEADER_PAUSE_S))
    return pause


class PrioritySlots:
    """A concurrency limit whose waiters are served by priority (lowest first), then in arrival order.

    `asyncio.Semaphore` is first come, first served: a call that gives up its slot to back off before a retry
    would rejoin the back of a queue of hundreds of fresh calls and wait for all of them. Here a retry asks
    with a better priority than a first attempt, so it goes next; among first attempts, priority-1 agents go
    before priority-3 ones. A freed slot is handed straight to the best waiter, so `_free > 0` only while
    nobody waits.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the concurrency limit must be >= 1, got {limit}")
        self.limit = limit
        self._free = limit
        self._waiters: list[tuple[tuple[int, ...], int, asyncio.Future[None]]] = []
        self._live = 0  # waiters not yet served or cancelled (the heap may still hold cancelled ones)
        self._arrivals = itertools.count()

    @property
    def in_use(self) -> int:
        return self.limit - self._free

    @property
    def waiting(self) -> int:
        return self._live

    async def acquire(self, priority: tuple[int, ...] = (0,)) -> None:
        if self._free > 0 and not self._live:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), future))
        self._live += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            else:
                self._live -= 1  # cancelled while waiting; its heap entry is skipped by release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                self._live -= 1
                future.set_result(None)  # the slot goes straight to the next waiter
                return
        self._free += 1
