"""Pure retry policy, the budget's reservations, and the client-side rate limiter."""

from __future__ import annotations

import asyncio
import math

import pytest

from claude_force_nb import BudgetExceededError, RetryPolicy
from claude_force_nb._calls import pacing_input_tokens
from claude_force_nb._exceptions import APICallError, AttemptTimeoutError, ConnectionFailedError
from claude_force_nb._limits import Budget, RateLimiter, SmoothLimit
from claude_force_nb._request import ChatMessage, MessageRequest, RateLimitSnapshot
from claude_force_nb._retry import backoff_delay, is_retryable_status, parse_retry_after
from claude_force_nb.sim import count_input_tokens

from .conftest import FakeClock


@pytest.mark.parametrize(
    ("status", "error_type", "should_retry", "expected"),
    [
        (408, None, None, True),
        (409, None, None, True),
        (429, "rate_limit_error", None, True),
        (500, "api_error", None, True),
        (502, None, None, True),
        (529, "overloaded_error", None, True),
        (None, "overloaded_error", None, True),  # an error event inside a 200 stream
        (400, "invalid_request_error", None, False),
        (401, "authentication_error", None, False),
        (403, "permission_error", None, False),
        (404, "not_found_error", None, False),
        (413, "request_too_large", None, False),
        (400, None, True, False),  # never: not even when the server says so
        (500, None, False, False),  # x-should-retry: false is obeyed
        (422, None, True, True),  # x-should-retry: true is obeyed where it is allowed
        (422, None, None, False),
    ],
)
def test_retryable_statuses(
    status: int | None, error_type: str | None, should_retry: bool | None, expected: bool
) -> None:
    """Which answers are retried, as a table."""
    assert is_retryable_status(status, error_type=error_type, should_retry=should_retry) is expected


def test_exception_verdicts() -> None:
    """Timeouts and connection failures are retryable; an APICallError carries its status's verdict."""
    assert AttemptTimeoutError("slow").retryable
    assert ConnectionFailedError("reset").retryable
    assert APICallError("x", status=529, error_type="overloaded_error").retryable
    assert not APICallError("x", status=401).retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40.0),  # now = 60
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "-5"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """retry-after-ms wins; seconds and HTTP dates are understood; nonsense means no advice."""
    assert parse_retry_after(headers, now=60.0) == expected


def test_backoff_grows_is_capped_and_jittered() -> None:
    """Backoff doubles per retry up to the cap, and jitter only ever shortens it."""
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=8.0, jitter=0.25)
    assert [backoff_delay(i, policy, retry_after=None, rand=0.0) for i in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert backoff_delay(2, policy, retry_after=None, rand=0.999) == pytest.approx(2 * (1 - 0.25 * 0.999))
    assert backoff_delay(10_000, policy, retry_after=None, rand=0.0) == 8.0


def test_retry_after_replaces_backoff_and_is_capped() -> None:
    """A server's retry-after is used as is, up to the configured cap."""
    policy = RetryPolicy(max_retry_after_s=30.0)
    assert backoff_delay(0, policy, retry_after=2.5, rand=0.9) == 2.5
    assert backoff_delay(0, policy, retry_after=3600, rand=0.0) == 30.0


def test_retry_policy_validates() -> None:
    """Nonsense policies are refused."""
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)


async def test_budget_reserves_settles_and_refuses() -> None:
    """Reservations hold money until settled; a call that could pass the limit even once every hold settled
    at zero is refused at once, holding nothing."""
    budget = Budget(1.0)
    first = await budget.reserve(0.6, what="a")
    with pytest.raises(BudgetExceededError, match=r"b refused before sending.*\$1\.0000 left"):
        await budget.reserve(1.5, what="b")
    assert budget.reserved_usd == pytest.approx(0.6)
    budget.settle(first, 0.1)
    assert budget.spent_usd == pytest.approx(0.1)
    assert budget.remaining_usd == pytest.approx(0.9)
    second = await budget.reserve(0.5, what="b")
    budget.release(second)
    budget.settle(second, 0.3)  # settling twice is a no-op
    assert budget.spent_usd == pytest.approx(0.1)
    assert budget.reserved_usd == 0


async def test_a_tiny_budget_is_named_to_the_cent_fraction_in_refusals_and_reprs() -> None:
    """A $0.0001 budget read "the $0.00 budget" in its refusal (seen in the panel): every amount shows
    the four decimals that small figures need."""
    budget = Budget(0.0001)
    with pytest.raises(BudgetExceededError, match=r"\$0\.0001 left of the \$0\.0001 budget"):
        await budget.reserve(0.0436, what="call")
    assert "limit=$0.0001" in repr(budget)


async def test_budget_waits_for_holds_to_settle_instead_of_refusing() -> None:
    """A worst case that fits only once calls in flight settle waits for them, then is granted (or refused
    when what they really spent leaves too little); the limit is never passed."""
    budget = Budget(1.0)
    held = await budget.reserve(0.6, what="a")
    waiting = asyncio.ensure_future(budget.reserve(0.5, what="b"))
    await asyncio.sleep(0)
    assert not waiting.done() and budget.waiting == 1 and budget.reserved_usd == pytest.approx(0.6)
    budget.settle(held, 0.2)
    granted = await waiting
    assert granted.amount == 0.5 and budget.waiting == 0
    assert budget.spent_usd + budget.reserved_usd == pytest.approx(0.7)
    late = asyncio.ensure_future(budget.reserve(0.5, what="c"))  # fits beside spent, not beside the hold
    await asyncio.sleep(0)
    assert not late.done()
    budget.settle(granted, math.nan)  # the hold is kept whole as spent: 0.2 + 0.5 leaves 0.3 < 0.5
    with pytest.raises(BudgetExceededError, match="c refused before sending"):
        await late
    assert budget.spent_usd == pytest.approx(0.7) and budget.reserved_usd == 0 and budget.waiting == 0


async def test_budget_waiters_go_by_priority_and_cancel_cleanly() -> None:
    """Waiters are served by priority, then arrival; a cancelled waiter holds nothing and does not block
    the ones behind it; raising the limit lets waiters go at once."""
    budget = Budget(1.0)
    held = await budget.reserve(1.0, what="all")
    order: list[str] = []

    async def wait(name: str, priority: tuple[int, ...]) -> None:
        await budget.reserve(0.4, what=name, priority=priority)
        order.append(name)

    tasks = {
        name: asyncio.ensure_future(wait(name, priority))
        for name, priority in (("late-first-attempt", (1, 3)), ("retry", (0, 3)), ("cancelled", (0, 1)))
    }
    await asyncio.sleep(0)
    tasks["cancelled"].cancel()
    await asyncio.sleep(0)
    assert budget.waiting == 2
    budget.settle(held, 0.2)  # room for two 0.4 holds: the retry first, then the first attempt
    await asyncio.gather(tasks["retry"], tasks["late-first-attempt"])
    assert order == ["retry", "late-first-attempt"]
    assert budget.reserved_usd == pytest.approx(0.8) and tasks["cancelled"].cancelled()
    more = asyncio.ensure_future(budget.reserve(0.4, what="more"))
    await asyncio.sleep(0)
    assert not more.done()
    budget.limit_usd = 2.0
    assert (await more).amount == 0.4


async def test_budget_refuses_unpriced_models() -> None:
    """A NaN worst case (unpriced model) cannot be bounded, so a budgeted call is refused."""
    with pytest.raises(BudgetExceededError, match="not in the rate card"):
        await Budget(5.0).reserve(math.nan, what="x")
    await Budget(None).reserve(math.nan, what="x")  # no budget, no refusal


def test_smooth_limit_lets_at_most_its_burst_through_then_paces() -> None:
    """A 720-per-minute limit with a 1 s burst lets one second's worth go at once, then one request every
    1/12 s: over 5 s that is 12 + 5 * 12, where a bucket starting full of a minute let 756 out."""
    per_minute, burst_s, horizon = 720, 1.0, 5.0
    limit = SmoothLimit(per_minute, burst_s=burst_s)
    at_once = 0
    while limit.allowed_at(1, now=0.0) == 0.0:
        limit.book(1, at=0.0)
        at_once += 1
    assert at_once == per_minute / 60 * burst_s
    sent, t = at_once, 0.0
    while (t := limit.allowed_at(1, now=t)) <= horizon + 1e-9:
        limit.book(1, at=t)
        sent += 1
    assert sent == at_once + horizon * per_minute / 60


def test_smooth_limit_admits_a_cost_bigger_than_its_burst_when_full() -> None:
    """A cost larger than the burst goes when the limit is full (not never); the next one waits for it."""
    limit = SmoothLimit(60, burst_s=1.0)
    assert limit.allowed_at(10, now=0.0) == 0.0
    limit.book(10, at=0.0)
    assert limit.allowed_at(1, now=0.0) == pytest.approx(10.0)


async def test_rate_limiter_paces_requests_from_the_start() -> None:
    """With 120 requests/minute and a half-second burst, requests go one every half second from the first."""
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=120, burst_s=0.5, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await limiter.acquire(input_tokens=1, output_tokens=1)
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


async def test_rate_limiter_takes_output_at_max_tokens_and_gives_back() -> None:
    """Output tokens are booked at max_tokens and the unused part is given back: the next call waits only for
    what the first one used."""
    clock = FakeClock()
    limiter = RateLimiter(output_tokens_per_minute=1000, clock=clock, sleep=clock.sleep)
    await limiter.acquire(input_tokens=0, output_tokens=800)
    limiter.give_back_output(700)
    await limiter.acquire(input_tokens=0, output_tokens=800)
    assert clock.sleeps == [pytest.approx(100 * 60 / 1000)]


async def test_rate_limiter_charges_input_the_api_counted_beyond_the_estimate() -> None:
    """When the answer counts more input tokens than were booked, the difference is taken after the fact."""
    clock = FakeClock()
    limiter = RateLimiter(input_tokens_per_minute=6000, clock=clock, sleep=clock.sleep)
    await limiter.acquire(input_tokens=100, output_tokens=0)
    limiter.correct_input(100, 400)
    await limiter.acquire(input_tokens=100, output_tokens=0)
    assert clock.sleeps == [pytest.approx(400 * 60 / 6000)]


def test_rate_limiter_learns_the_limits_the_headers_state() -> None:
    """With no limit configured, the anthropic-ratelimit-*-limit headers set them; a configured one stays."""
    limiter = RateLimiter(requests_per_minute=50)
    assert not limiter.learned
    stated = RateLimitSnapshot(limit={"requests": 600, "input-tokens": 40_000, "tokens": 48_000})
    assert limiter.learn(stated) == {"input-tokens": 40_000}
    assert limiter.requests is not None and limiter.requests.per_minute == 50
    assert limiter.input_tokens is not None and limiter.input_tokens.per_minute == 40_000
    assert limiter.learn(stated) == {}  # the same figures again change nothing
    assert RateLimiter(learn_limits=False).learn(stated) == {}


async def test_pause_holds_every_call() -> None:
    """A shared pause (after a 429) delays the next acquisition until it is over."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    limiter.pause(2.0)
    await limiter.acquire(input_tokens=1, output_tokens=1)
    assert clock.now == pytest.approx(2.0)


def test_nearly_spent_headers_pause_proportionally() -> None:
    """Remaining under 5% of a limit pauses until the server's bucket refills to 5%, capped by the reset."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    plenty = RateLimitSnapshot(
        remaining={"requests": 50}, limit={"requests": 100}, reset_in_s={"requests": 30}
    )
    assert limiter.observe(plenty) == 0
    low = RateLimitSnapshot(remaining={"requests": 1}, limit={"requests": 100}, reset_in_s={"requests": 30})
    assert limiter.observe(low) == pytest.approx((5 - 1) / (100 / 60))
    tight = RateLimitSnapshot(remaining={"tokens": 0}, limit={"tokens": 1000}, reset_in_s={"tokens": 0.5})
    assert limiter.observe(tight) == pytest.approx(0.5)


async def test_priority_slots_serve_the_best_priority_first() -> None:
    """Waiters get a freed slot by priority, then arrival; a cancelled waiter never holds a slot."""
    import asyncio

    from claude_force_nb._limits import PrioritySlots

    slots = PrioritySlots(1)
    await slots.acquire((0,))
    order: list[str] = []

    async def wait(name: str, priority: tuple[int, ...]) -> None:
        await slots.acquire(priority)
        order.append(name)
        slots.release()

    tasks = [
        asyncio.ensure_future(wait("late first attempt", (1, 3))),
        asyncio.ensure_future(wait("first attempt", (1, 1))),
        asyncio.ensure_future(wait("retry", (0, 2))),
        asyncio.ensure_future(wait("cancelled", (0, 0))),
    ]
    await asyncio.sleep(0)
    tasks[3].cancel()
    slots.release()
    await asyncio.gather(*tasks[:3])
    assert order == ["retry", "first attempt", "late first attempt"]
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_budget_holds_read_exactly_zero_once_settled() -> None:
    """Adding and removing holds leaves no float residue: nothing held reads as exactly $0."""
    budget = Budget(1.0)
    holds = [await budget.reserve(amount, what="x") for amount in (0.1, 0.2, 0.3)]
    for hold in holds:
        budget.release(hold)
    assert budget.reserved_usd == 0.0 and budget.remaining_usd == 1.0


@pytest.mark.parametrize("turns", [1, 3])
def test_the_pacing_estimate_is_the_simulators_count_with_the_message_overhead(turns: int) -> None:
    """The input tokens a limiter books equal what the simulator (and so its limiter) counts, framing
    tokens of every message included: an estimate below the count runs a paced fan-out into 429s."""
    messages = tuple(
        ChatMessage(role="user" if i % 2 == 0 else "assistant", content="word " * (7 * i + 3))
        for i in range(turns)
    )
    request = MessageRequest(model="m", system="You review code. " * 9, messages=messages, max_tokens=10)
    assert pacing_input_tokens(request) == count_input_tokens(request.to_api_kwargs())
