"""Bad numbers and call fields are refused where they enter, with one line naming the argument."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from claude_force_nb import (
    AsyncAgentOrchestrator,
    CallSpec,
    ConfigError,
    ResponseCache,
    RetryPolicy,
    define_agent,
)
from claude_force_nb._limits import Budget, RateLimiter
from claude_force_nb._session import SessionSettings
from claude_force_nb._validate import (
    check_bool,
    check_int,
    check_number,
    check_path_text,
    nesting_place,
    path_problem,
    shorten,
)
from claude_force_nb.sim import Simulator

from .conftest import make_orchestrator

# -- the pure checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (np.int64(7), True),
        (0, False),
        (2.0, False),
        (True, False),
        (math.nan, False),
        ("3", False),
    ],
)
def test_check_int(value: object, ok: bool) -> None:
    """Integers (numpy's too) within range pass as int; floats, bools, strings and NaN are refused."""
    if ok:
        result = check_int("n", value, minimum=1)
        assert result == value and type(result) is int
    else:
        with pytest.raises(ConfigError, match=r"^n must be an integer >= 1, got "):
            check_int("n", value, minimum=1)


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0.5, True), (3, True), (0, False), (-1.0, False), (math.nan, False), (math.inf, False), (True, False)],
)
def test_check_number_refuses_non_finite_and_out_of_range(value: object, ok: bool) -> None:
    """NaN and infinities are never a usable limit: every comparison with NaN is false."""
    if ok:
        assert check_number("x", value, above=0.0) == float(value)  # type: ignore[arg-type]
    else:
        with pytest.raises(ConfigError, match=r"^x must be a finite number > 0, got "):
            check_number("x", value, above=0.0)


def test_other_checks_and_messages_stay_one_line() -> None:
    """Bools are only bools; paths refuse NUL bytes and impossible lengths; long values are shortened."""
    assert check_bool("flag", False) is False
    with pytest.raises(ConfigError, match="flag must be True or False"):
        check_bool("flag", "False")
    with pytest.raises(ConfigError, match="NUL byte"):
        check_path_text("cache_dir", "a\x00b")
    with pytest.raises(ConfigError, match="5000 characters long") as info:
        check_path_text("cache_dir", "x" * 5000)
    assert "\n" not in str(info.value) and len(str(info.value)) < 250
    assert shorten("y" * 500).endswith("(500 characters)")


def test_nesting_place_finds_where_json_gets_too_deep() -> None:
    """The line and column of the bracket that passes the limit; brackets inside strings do not count."""
    assert nesting_place('{"a": "[[[["}', limit=2) is None
    assert nesting_place('{\n  "a": [[1]]}', limit=2) == (2, 9)
    assert nesting_place('{"s": "\\"[["}', limit=1) is None


def test_path_problem_names_the_cause() -> None:
    """A symlink loop and a NUL byte are said in words, not as a traceback's type name."""
    assert path_problem(RuntimeError("Symlink loop from '/x'")) == "it is a symlink loop"
    assert path_problem(ValueError("embedded null byte")) == "it contains a NUL byte"


# -- where arguments enter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_concurrent", math.nan),  # hung every call forever: no slot ever looked free
        ("max_concurrent", 2.5),
        ("max_concurrent", True),
        ("max_retries", math.nan),  # retried without end: `retries >= nan` is never true
        ("max_retries", 1.5),
        ("timeout_seconds", math.inf),  # failed every call with a misleading "Connection error"
        ("timeout_seconds", math.nan),
        ("timeout_seconds", "5"),
        ("max_tokens", 0),
        ("model", ""),
        ("model", 123),
        ("cache_ttl_hours", math.nan),
        ("cache_max_size_mb", -1.0),
        ("budget_usd", math.inf),
        ("budget_usd", math.nan),
        ("requests_per_minute", math.nan),
        ("input_tokens_per_minute", math.inf),
        ("output_tokens_per_minute", 0),
        ("count_tokens_per_minute", math.nan),
        ("cache_timeout_s", math.inf),
        ("replay", "False"),
    ],
)
def test_orchestrator_refuses_unusable_numbers(name: str, value: object) -> None:
    """Every numeric argument of the orchestrator is checked (type, finite, range) with its name said."""
    with pytest.raises(ConfigError, match=rf"^{name} must be ") as info:
        AsyncAgentOrchestrator(enable_cache=False, **{name: value})  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ttl_hours", math.nan),
        ("max_size_mb", math.inf),
        ("memory_max_size_mb", math.nan),
        ("backend", 5),
        ("verify_integrity", "no"),
        ("exclude_agents", "fixer"),
    ],
)
def test_response_cache_refuses_unusable_arguments(name: str, value: object) -> None:
    """ResponseCache checks its numbers and backend with the same one-line ConfigError."""
    with pytest.raises(ConfigError, match=rf"^(cache backend|{name}) must be"):
        ResponseCache(**{"backend": "memory", name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: RetryPolicy(max_retries=math.nan), "max_retries"),  # type: ignore[arg-type]
        (lambda: RetryPolicy(base_delay_s=math.inf), "base_delay_s"),
        (lambda: RetryPolicy(jitter=math.nan), "jitter"),
        (lambda: Budget(math.inf), "budget_usd"),
        (lambda: RateLimiter(requests_per_minute=math.nan), "requests_per_minute"),
    ],
)
def test_policies_refuse_non_finite_values(make: Any, name: str) -> None:
    """The retry policy, budget and rate limiter refuse NaN/inf themselves, however they are built."""
    with pytest.raises(ConfigError, match=rf"^{name} must be "):
        make()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_concurrent", math.nan),
        ("max_concurrent", 2.5),
        ("timeout_seconds", math.inf),
        ("max_retries", -1),
        ("max_tokens", True),
        ("model", ""),
        ("cache_ttl_hours", math.inf),
        ("budget_usd", math.inf),
        ("requests_per_minute", math.nan),
        ("enable_cache", "yes"),
        ("cache_dir", "a\x00b"),
        ("config_path", "x" * 5000),
        ("max_template_chars", 0),
        ("default_format", "yaml"),
        ("cache_backend", "mongo"),
    ],
)
def test_session_settings_refuse_unusable_values(name: str, value: object) -> None:
    """SessionSettings (behind `%config AgentMagics.*`) checks every field when it is made."""
    with pytest.raises(ConfigError, match=rf"^{name} (must|contains|is)") as info:
        SessionSettings(**{name: value})  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


# -- call fields ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", ""),
        ("model", 123),
        ("max_tokens", 0),
        ("max_tokens", 2.0),
        ("temperature", math.nan),
        ("task", 5),
        ("use_cache", "no"),
        ("history", ["not", "messages"]),
    ],
)
def test_call_fields_are_checked_where_they_enter(field: str, value: object) -> None:
    """A CallSpec refuses a bad field at once; 0 and "" are mistakes, never "use the default"."""
    with pytest.raises(ConfigError, match=field):
        CallSpec(**{"agent": "a", "task": "t", field: value})  # type: ignore[arg-type]


async def test_execute_agent_raises_instead_of_falling_back_to_defaults(sim: Simulator) -> None:
    """max_tokens=0 and model="" used to be replaced silently by the defaults and sent."""
    define_agent("a", "x")
    async with make_orchestrator(sim) as orch:
        for bad in ({"max_tokens": 0}, {"model": ""}):
            with pytest.raises(ConfigError, match=next(iter(bad))):
                await orch.execute_agent("a", "task", **bad)  # type: ignore[arg-type]
    assert sim.requests == [] and len(orch.runs) == 0


async def test_one_bad_item_fails_alone_in_a_batch(sim: Simulator) -> None:
    """model=123 in one item made the whole execute_multiple raise AttributeError."""
    define_agent("a", "x")
    async with make_orchestrator(sim) as orch:
        results = await orch.execute_multiple(
            [("a", "one"), {"agent": "a", "task": "two", "model": 123}, "a", ("a", "three")]
        )
    assert [r.success for r in results] == [True, False, False, True]
    assert [r.status for r in results[1:3]] == ["invalid", "invalid"]
    assert "model must be a string, got 123" in results[1].errors[0]
    assert len(sim.requests) == 2


async def test_workflow_with_no_steps_is_a_clear_error(sim: Simulator) -> None:
    """steps=[] raised IndexError; a string would have run one step per character."""
    async with make_orchestrator(sim) as orch:
        with pytest.raises(ConfigError, match="steps is empty"):
            await orch.run_workflow("adhoc", "task", steps=[])
        with pytest.raises(ConfigError, match="steps must be a list of agent names"):
            await orch.run_workflow("adhoc", "task", steps="abc")
    assert sim.requests == []


async def test_a_valid_orchestrator_still_runs(sim: Simulator, tmp_path: Path) -> None:
    """The checks accept what worked before: numpy ints, int-valued timeouts, explicit limits."""
    define_agent("a", "x")
    async with make_orchestrator(
        sim, max_concurrent=np.int64(2), timeout_seconds=30, max_retries=0, budget_usd=1
    ) as orch:
        results = await asyncio.wait_for(orch.execute_multiple([("a", "x"), ("a", "y")]), 30)
    assert all(r.success for r in results)


async def test_a_batch_poll_interval_is_checked_before_anything_is_submitted(sim: Simulator) -> None:
    """poll_interval=inf would submit a batch and then never look at it again."""
    define_agent("a", "x")
    async with make_orchestrator(sim) as orch:
        for bad in (math.inf, math.nan, 0):
            with pytest.raises(ConfigError, match=r"^poll_interval must be a finite number of seconds > 0"):
                await orch.execute_batch([("a", "x")], poll_interval=bad)
    assert sim.requests == []


def test_every_setting_has_a_check() -> None:
    """A SessionSettings field added without a check would take NaN or a wrong type silently."""
    from claude_force_nb._session import _SETTING_CHECKS

    assert set(_SETTING_CHECKS) == set(SessionSettings.__dataclass_fields__)
