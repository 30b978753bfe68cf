"""Coordination through a real redis-server: one budget and one set of rate limits for many orchestrators.

The simulator is the referee: spend is recomputed from what it served, 429s are what it refused.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from traitlets import TraitError

from claude_force_nb import (
    AsyncAgentOrchestrator,
    BudgetExceededError,
    ConfigError,
    CoordinationError,
    define_agent,
)
from claude_force_nb._coord import Coordination, SharedBudget, SharedRateLimiter
from claude_force_nb._display import format_cost
from claude_force_nb._pricing import RateCard
from claude_force_nb._request import Usage
from claude_force_nb.sim import Simulator, count_input_tokens, serve
from tests.redis_support import RedisServer

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from claude_force_nb._magic import AgentMagics

from .conftest import make_orchestrator

pytestmark = pytest.mark.redis

MODEL = "claude-sonnet-4-6"


def fresh_scope() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def shared(sim: Simulator, url: str, scope: str, owner: str, **options: Any) -> AsyncAgentOrchestrator:
    options.setdefault("model", MODEL)
    return make_orchestrator(sim, coordination=url, scope=scope, owner=owner, **options)


def referee_spend(sim: Simulator, model: str = MODEL) -> float:
    """What the simulator served, priced, plus the worst case of every request it never answered (a client
    killed mid-call may still be billed): spend recomputed without the product's counters."""
    stats = sim.stats()
    card = RateCard.default()
    served = card.cost(model, Usage(input_tokens=stats["input_tokens"], output_tokens=stats["output_tokens"]))
    unanswered = [r for r in sim.requests if r["path"] == "/v1/messages" and r["status"] is None]
    for record in unanswered:
        body = record["json"]
        served += card.cost(
            model, Usage(input_tokens=count_input_tokens(body), output_tokens=body["max_tokens"])
        )
    return served


# -- construction -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"coordination": "http://localhost:6379"}, "must be a redis://"),
        ({"coordination": "redis://localhost:notaport/0"}, "coordination ="),
        ({"coordination": "redis://localhost:6379/0", "scope": "team {a}"}, "scope = "),
        ({"coordination": "redis://localhost:6379/0", "scope": ""}, "scope = "),
        ({"coordination": "redis://localhost:6379/0", "coordination_failure": "maybe"}, "'open' or 'closed'"),
        ({"scope": "team-a"}, "need coordination="),
    ],
)
def test_a_bad_url_or_scope_is_a_one_line_error_at_construction(
    options: dict[str, Any], complaint: str
) -> None:
    """A bad URL, scope or policy is refused when the orchestrator is built, in one line."""
    with pytest.raises(ConfigError, match=complaint) as info:
        AsyncAgentOrchestrator(base_url="http://127.0.0.1:9", **options)
    assert "\n" not in str(info.value)


def test_without_coordination_the_budget_and_limits_are_in_process() -> None:
    """No URL and no env var: the in-process budget and limiter, as before."""
    orch = AsyncAgentOrchestrator(
        base_url="http://127.0.0.1:9", budget_usd=1.0, environ={}, enable_cache=False
    )
    assert orch.coordination is None
    assert not isinstance(orch.budget, SharedBudget) and not isinstance(orch.limiter, SharedRateLimiter)


def test_the_environment_variable_turns_coordination_on() -> None:
    """CLAUDE_FORCE_NB_COORDINATION gives every orchestrator built without coordination= the shared store."""
    environ = {"CLAUDE_FORCE_NB_COORDINATION": "redis://127.0.0.1:6379/0"}
    # No response cache: this orchestrator is never closed, and an open SQLite file would be reported as a
    # leak (a ResourceWarning on Python 3.13).
    orch = AsyncAgentOrchestrator(
        base_url="http://127.0.0.1:9", environ=environ, scope="team-a", enable_cache=False
    )
    assert orch.coordination is not None and orch.coordination.scope == "team-a"
    assert isinstance(orch.budget, SharedBudget) and isinstance(orch.limiter, SharedRateLimiter)


# -- the shared budget --------------------------------------------------------------------------------------


async def test_two_orchestrators_share_one_budget(sim: Simulator, redis_url: str) -> None:
    """Two orchestrators with $0.05 each on one scope spend at most $0.05 together (by the simulator's count),
    use most of it, and the ledger says who spent what."""
    define_agent("a", "x")
    scope, limit = fresh_scope(), 0.05
    common = {"budget_usd": limit, "max_tokens": 500, "max_concurrent": 20}
    async with (
        shared(sim, redis_url, scope, "alice", **common) as alice,
        shared(sim, redis_url, scope, "bob", **common) as bob,
    ):
        first, second = await asyncio.gather(
            alice.execute_multiple([("a", f"alice {i}") for i in range(120)]),
            bob.execute_multiple([("a", f"bob {i}") for i in range(120)]),
        )
        assert isinstance(alice.budget, SharedBudget)
        ledger = await alice.budget.breakdown()
    spent = referee_spend(sim)
    assert 0.8 * limit <= spent <= limit
    assert ledger["spent_usd"] == pytest.approx(spent) and ledger["held_usd"] == pytest.approx(0.0)
    assert alice.budget.spent_usd == pytest.approx(spent)  # orch.budget shows the shared figures
    by_owner = ledger["owners"]
    assert set(by_owner) == {"alice", "bob"}
    for owner, results in (("alice", first), ("bob", second)):
        assert by_owner[owner]["spent"] == pytest.approx(sum(r.cost_usd for r in results if r.success))
    refused = [r for r in first + second if r.status == "refused"]
    assert refused and "shared in scope" in refused[0].errors[0]


async def test_a_lapsed_lease_is_settled_as_spent_at_its_worst_case(redis_url: str) -> None:
    """A hold whose owner stops renewing it (a killed process) is counted as spent, in full, once its lease
    lapses: never forgotten, never holding the budget forever."""
    scope = fresh_scope()
    dead = Coordination(
        redis_url, scope=scope, owner="dead", lease_s=0.6, heartbeat_s=0.2, rebuild_window_s=0.3
    )
    alive = Coordination(
        redis_url, scope=scope, owner="alive", lease_s=5, heartbeat_s=0.2, rebuild_window_s=0.3
    )
    try:
        held = await SharedBudget(1.0, dead).reserve(0.3, what="doomed call")
        assert held.amount == 0.3
        dead.closed = True  # stops renewing, as a killed process would (its heartbeat ends)
        budget = SharedBudget(1.0, alive)
        _, owners = await alive.report()
        assert owners["dead"]["held"] == pytest.approx(0.3)
        await asyncio.sleep(1.0)
        ledger, owners = await alive.report()
        assert float(ledger["spent"]) == pytest.approx(0.3) and float(ledger["held"]) == pytest.approx(0.0)
        assert owners["dead"]["lapsed"] == pytest.approx(0.3) and owners["dead"]["spent"] == pytest.approx(
            0.3
        )
        # What is left is the limit minus the lapsed worst case.
        with pytest.raises(BudgetExceededError, match="exceeds the"):
            await budget.reserve(0.71, what="too big")
    finally:
        dead.closed = False
        await dead.aclose()
        await alive.aclose()


async def test_a_lost_ledger_is_rebuilt_from_the_live_clients_journals(private_redis: RedisServer) -> None:
    """Redis restarted without persistence: the clients notice the epoch vanished, add what they spent and
    hold, and the next reservation sees the whole spend again, never $0."""
    url, scope = private_redis.url, fresh_scope()
    one = Coordination(url, scope=scope, owner="one", heartbeat_s=0.1, rebuild_window_s=0.4)
    two = Coordination(url, scope=scope, owner="two", heartbeat_s=0.1, rebuild_window_s=0.4)
    try:
        first, second = SharedBudget(1.0, one), SharedBudget(1.0, two)
        first.settle(await first.reserve(0.3, what="a"), 0.25)
        second.settle(await second.reserve(0.3, what="b"), 0.2)
        open_hold = await second.reserve(0.1, what="in flight")
        await asyncio.sleep(0.2)  # the settles land
        private_redis.restart()
        # The first reservation after the restart waits for the rebuild and sees everything spent and held.
        with pytest.raises(BudgetExceededError, match="exceeds the"):
            await first.reserve(0.6, what="would fit in an empty ledger")
        ledger, owners = await one.report()
        assert float(ledger["spent"]) == pytest.approx(0.45)
        assert float(ledger["held"]) == pytest.approx(0.1)
        assert owners["one"]["spent"] == pytest.approx(0.25) and owners["two"]["spent"] == pytest.approx(0.2)
        second.settle(open_hold, 0.05)
        await asyncio.sleep(0.2)
        ledger, _ = await two.report()
        assert float(ledger["spent"]) == pytest.approx(0.5) and float(ledger["held"]) == pytest.approx(0.0)
    finally:
        await one.aclose()
        await two.aclose()


async def test_the_budget_fails_closed_when_redis_is_down(sim: Simulator, private_redis: RedisServer) -> None:
    """Redis unreachable: a budgeted call is refused before sending, naming the URL and the option; with
    coordination_failure='open' it goes ahead against a local ledger, with one warning."""
    define_agent("a", "x")
    url = private_redis.url
    private_redis.stop()
    async with shared(sim, url, fresh_scope(), "solo", budget_usd=1.0) as orch:
        result = await orch.execute_agent("a", "task")
    assert result.status == "refused"
    assert url.split("/")[2] in result.errors[0] and "coordination_failure='open'" in result.errors[0]
    assert sim.stats()["requests"] == 0
    async with shared(sim, url, fresh_scope(), "solo", budget_usd=1.0, coordination_failure="open") as orch:
        results = await orch.execute_multiple([("a", f"t{i}") for i in range(3)])
    assert all(r.success for r in results)
    assert sim.stats()["requests"] == 3


async def test_rate_limits_fail_open_to_the_local_limiter_with_one_warning(
    sim: Simulator, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down and no budget, calls go on paced by the local limiter; one warning says so."""
    define_agent("a", "x")
    url = private_redis.url
    private_redis.stop()
    with caplog.at_level(logging.WARNING, logger="claude_force_nb"):
        async with shared(sim, url, fresh_scope(), "solo", requests_per_minute=6000) as orch:
            results = await orch.execute_multiple([("a", f"t{i}") for i in range(5)])
    assert all(r.success for r in results)
    warnings = [r for r in caplog.records if "shared rate limits" in r.getMessage()]
    assert len(warnings) == 1


# -- shared rate limits -------------------------------------------------------------------------------------


async def test_two_orchestrators_share_one_request_limit(redis_url: str) -> None:
    """Two orchestrators pacing to the server's 600 RPM on one scope get no 429 from it together (each alone
    would pace to the full limit and run into it)."""
    define_agent("a", "x")
    scope, rpm, calls = fresh_scope(), 600, 30
    with serve(requests_per_minute=rpm) as limited:
        common = {"requests_per_minute": rpm, "max_concurrent": 20}
        async with (
            shared(limited, redis_url, scope, "one", **common) as one,
            shared(limited, redis_url, scope, "two", **common) as two,
        ):
            first, second = await asyncio.gather(
                one.execute_multiple([("a", f"one {i}") for i in range(calls)]),
                two.execute_multiple([("a", f"two {i}") for i in range(calls)]),
            )
        stats = limited.stats()
    assert all(r.success for r in first + second)
    assert stats["by_status"] == {200: 2 * calls}


async def test_a_429_seen_by_one_client_pauses_the_others(redis_url: str) -> None:
    """A retry-after seen by one orchestrator holds back the other's next attempt for as long."""
    define_agent("a", "x")
    scope = fresh_scope()
    with serve() as server:
        from claude_force_nb.sim import Fault

        server.script(Fault("rate_limit", retry_after=0.5), match="first")
        async with (
            shared(server, redis_url, scope, "one") as one,
            shared(server, redis_url, scope, "two") as two,
        ):
            failed = await one.execute_agent("a", "first")
            assert failed.success  # retried after the pause
            hit = next(s for s in next(iter(one.runs)).spans if s.outcome != "ok")
            later = await two.execute_agent("a", "second")
            assert later.success
            assert hit.end is not None
            assert list(two.runs)[-1].spans[0].start - hit.end >= 0.45


# -- the notebook edge --------------------------------------------------------------------------------------


def test_config_options_share_the_session_budget_and_show_who_spent_what(
    shell: InteractiveShell,
    magics: AgentMagics,
    sim: Simulator,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`%config AgentMagics.coordination/scope` put the session's budget on the shared ledger; `%agent budget`
    shows the scope's totals and each member's spend; a bad URL is a one-line error with nothing changed."""
    scope = fresh_scope()
    shell.run_line_magic("config", f"AgentMagics.coordination = '{redis_url}'")
    shell.run_line_magic("config", f"AgentMagics.scope = '{scope}'")
    shell.run_line_magic("agent", "budget 1")
    assert isinstance(magics.session.budget, SharedBudget)
    result = shell.run_cell_magic("agent", "code-reviewer --quiet", "Review this.")
    assert result.success
    capsys.readouterr()
    shell.run_line_magic("agent", "budget")
    shown = capsys.readouterr().out
    assert f"Shared budget (scope '{scope}')" in shown
    owner = magics.session.coordination().owner
    assert owner in shown and format_cost(result.cost_usd) in shown
    with pytest.raises(TraitError, match="coordination"):
        magics.coordination = "http://nope"
    assert magics.session.settings.coordination == redis_url


async def test_limits_learned_by_one_member_pace_the_others_from_their_first_call(redis_url: str) -> None:
    """The first member learns the server's limit from its probe; a member that starts later adopts it from
    the scope instead of probing, and their fan-outs together meet no 429."""
    define_agent("a", "x")
    scope, rpm = fresh_scope(), 1200
    with serve(requests_per_minute=rpm) as limited:
        async with shared(limited, redis_url, scope, "one", max_concurrent=30) as one:
            await one.execute_agent("a", "first")
            assert one.limiter.learned == {"requests": rpm}
            async with shared(limited, redis_url, scope, "two", max_concurrent=30) as two:
                first, second = await asyncio.gather(
                    one.execute_multiple([("a", f"one {i}") for i in range(40)]),
                    two.execute_multiple([("a", f"two {i}") for i in range(40)]),
                )
                assert two.limiter.learned == {"requests": rpm}
        statuses = limited.stats()["by_status"]
    assert all(r.success for r in first + second)
    assert statuses == {200: 81}


async def test_a_member_without_a_limit_still_counts_in_the_shared_ledger(
    sim: Simulator, redis_url: str
) -> None:
    """A member with no budget reserves nothing (no round trip per call), but its spend reaches the ledger,
    so a member with a limit counts it."""
    define_agent("a", "x")
    scope = fresh_scope()
    async with shared(sim, redis_url, scope, "free") as free:
        results = await free.execute_multiple([("a", f"t{i}") for i in range(5)])
    async with shared(sim, redis_url, scope, "capped", budget_usd=1.0) as capped:
        assert isinstance(capped.budget, SharedBudget)
        ledger = await capped.budget.breakdown()
    assert ledger["spent_usd"] == pytest.approx(referee_spend(sim))
    assert ledger["owners"]["free"]["spent"] == pytest.approx(sum(r.cost_usd for r in results))


async def test_a_batch_reserves_and_settles_on_the_shared_ledger(sim: Simulator, redis_url: str) -> None:
    """Message Batches go through the same Budget interface: submitting reserves every item on the shared
    ledger (another member sees the holds), collecting settles them to the batch-priced cost the simulator
    counted, and nothing stays held."""
    from .test_batch import POLL, calls, referee_cost

    define_agent("a", "Answer briefly.")
    scope = fresh_scope()
    async with (
        shared(sim, redis_url, scope, "batcher", budget_usd=5.0) as orch,
        shared(sim, redis_url, scope, "watcher", budget_usd=5.0) as watcher,
    ):
        assert isinstance(orch.budget, SharedBudget) and isinstance(watcher.budget, SharedBudget)
        job = await orch.submit_batch(calls(4))
        assert (await watcher.budget.breakdown())["owners"]["batcher"]["held"] > 0
        await job.wait(poll_interval=POLL)
        assert orch.coordination is not None
        await orch.coordination.flush()  # its settles are pushed in the background
        ledger = await watcher.budget.breakdown()
    assert ledger["spent_usd"] == pytest.approx(referee_cost(sim, MODEL))
    assert ledger["held_usd"] == pytest.approx(0.0, abs=1e-12)


async def test_closed_failure_policy_fails_calls_when_the_shared_limits_are_unreachable(
    sim: Simulator, private_redis: RedisServer
) -> None:
    """coordination_failure='closed' also applies to pacing: with Redis down a call fails, unsent, with a
    CoordinationError naming the URL."""
    define_agent("a", "x")
    url = private_redis.url
    private_redis.stop()
    async with shared(sim, url, fresh_scope(), "strict", coordination_failure="closed") as orch:
        result = await orch.execute_agent("a", "task")
    assert not result.success and isinstance(result.exception, CoordinationError)
    assert url.split("/")[2] in result.errors[0]
    assert sim.stats()["requests"] == 0


async def test_a_coordinated_call_makes_one_round_trip_to_redis(
    sim: Simulator, private_redis: RedisServer
) -> None:
    """A call with a shared budget and a shared rate limit runs one script on the server: its reservation,
    its rate booking and the last call's settle travel together (the server's own command statistics are the
    referee). A settle no call comes to carry goes on its own moments later: the ledger is exact without a
    flush."""
    import redis

    define_agent("a", "x")
    calls = 20
    server = redis.Redis.from_url(private_redis.url)
    options: dict[str, Any] = {"budget_usd": 10.0, "requests_per_minute": 10**6}
    async with shared(sim, private_redis.url, fresh_scope(), "solo", **options) as orch:
        assert isinstance(orch.budget, SharedBudget) and orch.coordination is not None
        await orch.execute_agent("a", "warm up")  # the connection, and a new ledger's rebuild window
        server.config_resetstat()
        results = [await orch.execute_agent("a", f"task {i}") for i in range(calls)]
        stats = server.info("commandstats")
        scripts = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))
        # one per call, plus the heartbeat's (every 0.5 s); three per call before (reserve, book, settle)
        assert calls <= scripts < 1.5 * calls
        assert all(r.success for r in results)
        ledger_key = orch.coordination.budget_keys[0]
        for _ in range(200):
            if float(server.hget(ledger_key, "held") or "nan") < 1e-12:
                break
            await asyncio.sleep(0.01)
        assert float(server.hget(ledger_key, "held")) == pytest.approx(0.0, abs=1e-12)
        assert float(server.hget(ledger_key, "spent")) == pytest.approx(referee_spend(sim))
    server.close()


async def test_a_batch_hold_outlives_its_submitter_and_is_settled_once_by_the_collector(
    sim: Simulator, redis_url: str
) -> None:
    """A Message Batch runs on the API whether or not the process that sent it lives, so its items' holds
    keep their place on the shared ledger after the submitter stops renewing its leases (they are not settled
    as spent at their worst case), and a fresh process that collects the job settles those same holds: the
    ledger's spend is what the simulator counted, once, and nothing stays held."""
    from .test_batch import POLL, calls, referee_cost

    define_agent("a", "Answer briefly.")
    scope = fresh_scope()
    fast = {"lease_s": 0.4, "heartbeat_s": 0.1, "rebuild_window_s": 0.2}
    submitter = Coordination(redis_url, scope=scope, owner="submitter", **fast)
    async with make_orchestrator(sim, coordination=submitter, model=MODEL, budget_usd=5.0) as orch:
        job = await orch.submit_batch(calls(4))
        batch_id = job.batch_ids[0]
        await submitter.flush()
    await submitter.aclose()  # the kernel is gone: nothing renews its leases any more
    await asyncio.sleep(1.0)  # more than twice the lease
    async with shared(sim, redis_url, scope, "collector", budget_usd=5.0) as collector:
        assert isinstance(collector.budget, SharedBudget)
        before = await collector.budget.breakdown()
        assert before["spent_usd"] == 0.0 and before["held_usd"] > 0
        assert before["owners"]["submitter"]["lapsed"] == 0.0
        job = await collector.resume_batch(batch_id)
        results = await job.wait(poll_interval=POLL)
        assert all(r.success for r in results)
        after = await collector.budget.breakdown()
    assert after["spent_usd"] == pytest.approx(referee_cost(sim, MODEL))
    assert after["held_usd"] == pytest.approx(0.0, abs=1e-12)
