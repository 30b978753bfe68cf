"""What a call sends, decided before it runs (`_calls`): precedence, prompts, cache marks, batch items."""

from __future__ import annotations

from typing import Any

import pytest

from claude_force_nb import CallSpec, ChatMessage, ConfigError, RateCard
from claude_force_nb._agents import AgentSpec, build_system_prompt, build_user_turn
from claude_force_nb._calls import (
    as_call,
    check_max_tokens,
    estimate_tokens,
    plan_call,
    preview,
    worst_case_prompt_tokens,
)

CARD = RateCard.default()
MODEL = "claude-sonnet-4-6"


def plan(call: CallSpec, spec: AgentSpec, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "default_model": MODEL,
        "default_max_tokens": 1000,
        "rate_card": CARD,
        "prompt_caching": True,
        "prompt_cache_ttl": "5m",
        **options,
    }
    return plan_call(call, spec, **settings)


@pytest.mark.parametrize(
    ("call_value", "agent_value", "expected"),
    [
        (None, None, "default"),
        (None, "agent", "agent"),
        ("call", "agent", "call"),
        ("call", None, "call"),
    ],
)
def test_call_overrides_beat_the_agent_which_beats_the_defaults(
    call_value: str | None, agent_value: str | None, expected: str
) -> None:
    """Model, max_tokens and temperature each come from the call, else the agent, else the default."""
    models = {"call": "claude-haiku-4-5", "agent": "claude-opus-4-1", "default": MODEL}
    tokens = {"call": 11, "agent": 22, "default": 1000}
    temperatures = {"call": 0.1, "agent": 0.7, "default": None}

    def overrides(source: str | None) -> dict[str, Any]:
        if source is None:
            return {}
        return {"model": models[source], "max_tokens": tokens[source], "temperature": temperatures[source]}

    spec = AgentSpec(name="a", prompt="Be brief.", **overrides(agent_value))
    call = CallSpec(agent="a", task="t", **overrides(call_value))
    request = plan(call, spec).request
    assert (request.model, request.max_tokens, request.temperature) == (
        models[expected],
        tokens[expected],
        temperatures[expected],
    )


def test_the_request_holds_the_system_prompt_history_and_the_delimited_task() -> None:
    """The agent's definition and contract are the system prompt (or the call's own `system`); history comes
    first and the task last, in its delimited block; a workflow step also carries the previous output."""
    spec = AgentSpec(name="a", prompt="Review code.", contract="Bullet points.")
    history = (ChatMessage("user", "earlier"), ChatMessage("assistant", "reply"))
    request = plan(CallSpec(agent="a", task="look {x}", history=history), spec).request
    assert request.system == build_system_prompt("Review code.", "Bullet points.")
    assert request.messages == (*history, ChatMessage("user", build_user_turn("look {x}")))

    step = CallSpec(agent="a", task="t", system="Own prompt.", previous_output="out", previous_agent="b")
    request = plan(step, spec).request
    assert request.system == "Own prompt."
    assert request.messages[-1].content == build_user_turn("t", previous_output="out", previous_agent="b")


@pytest.mark.parametrize(
    ("extra_tokens", "caching", "marked"),
    [(0, True, True), (-1, True, False), (0, False, False)],
)
def test_the_system_prompt_is_marked_for_caching_only_when_the_model_can_cache_it(
    extra_tokens: int, caching: bool, marked: bool
) -> None:
    """A system prompt is marked for prompt caching when prompt caching is on and its estimated tokens reach
    the model's minimum on the rate card; a shorter mark would do nothing."""
    minimum = CARD.min_cacheable_tokens(MODEL)
    spec = AgentSpec(name="a", prompt="x" * (4 * (minimum + extra_tokens)))
    request = plan(CallSpec(agent="a", task="t"), spec, prompt_caching=caching).request
    assert request.cache_system is marked


@pytest.mark.parametrize(("setting", "sent"), [("1h", "1h"), ("5m", "5m"), ("anything else", "5m")])
def test_the_prompt_cache_ttl_is_one_hour_only_when_asked(setting: str, sent: str) -> None:
    """The 1-hour prompt-cache write is opt-in; everything else uses the 5-minute one."""
    request = plan(CallSpec(agent="a", task="t"), AgentSpec(name="a", prompt="p"), prompt_cache_ttl=setting)
    assert request.request.cache_ttl == sent


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"task": 42}, "task must be a string"),
        ({"temperature": 1.5}, r"temperature must be a finite number within 0\.\.1"),
        ({"temperature": -0.1}, r"temperature must be a finite number within 0\.\.1"),
        ({"max_tokens": -5}, "max_tokens must be a positive integer"),
    ],
)
def test_unusable_calls_are_refused_before_a_request_exists(fields: dict[str, object], match: str) -> None:
    """A non-string task, an out-of-range temperature or a bad max_tokens raise when the call is made,
    naming the field (ConfigError, a ValueError)."""
    with pytest.raises(ConfigError, match=match):
        CallSpec(**{"agent": "a", "task": "t", **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (64000, True),
        (0, False),
        (-1, False),
        (1.5, False),
        (True, False),
        ("10", False),
        (None, False),
    ],
)
def test_max_tokens_must_be_a_positive_integer(value: object, ok: bool) -> None:
    """Only positive ints are token limits (a bool is not, though Python counts it as an int)."""
    if ok:
        check_max_tokens(value)
    else:
        with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
            check_max_tokens(value)


def test_batch_items_become_calls_of_the_batch() -> None:
    """Pairs, mappings and CallSpecs all become CallSpecs with the batch's id and cache flags; a CallSpec
    keeps its own batch id; an unreadable item becomes an error naming it, without raising."""
    pair = as_call(("a", "t"), use_cache=False, refresh=True, batch_id="b1")
    assert pair == CallSpec(agent="a", task="t", use_cache=False, refresh=True, batch_id="b1")
    mapping = as_call({"agent": "a", "task": "t", "model": "m"}, use_cache=True, refresh=False, batch_id="b1")
    assert mapping == CallSpec(agent="a", task="t", model="m", batch_id="b1")
    mine = CallSpec(agent="a", task="t", batch_id="mine")
    assert as_call(mine, use_cache=True, refresh=False, batch_id="b1") is mine
    assert as_call(CallSpec(agent="a", task="t"), use_cache=True, refresh=False, batch_id="b1") == CallSpec(
        agent="a", task="t", batch_id="b1"
    )
    for bad in (("only one",), {"agent": "a", "task": "t", "colour": "red"}, ("a", "b", "c")):
        error = as_call(bad, use_cache=True, refresh=False, batch_id="b1")  # type: ignore[arg-type]
        assert isinstance(error, ValueError) and str(error).startswith(f"cannot read call {bad!r}")


def test_token_estimates_and_worst_cases() -> None:
    """The quick estimate is about 4 characters a token; the worst case is never below the prompt's bytes
    (a BPE token is at least one byte), so a budget reservation cannot be too small."""
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]
    spec = AgentSpec(name="a", prompt="Système: réponds brièvement. 🙂")
    request = plan(CallSpec(agent="a", task="ünïcödé " * 50), spec).request
    text_bytes = len(request.system.encode()) + sum(len(m.content.encode()) for m in request.messages)
    assert worst_case_prompt_tokens(request) > text_bytes > estimate_tokens(request.system)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short", "short"),
        ("  first line\nsecond line", "first line"),
        ("", ""),
        ("   \n  ", ""),
        ("x" * 61, "x" * 59 + "…"),
        ("x" * 60, "x" * 60),
    ],
)
def test_preview_is_the_first_line_cut_to_fit(text: str, expected: str) -> None:
    """Errors and logs name a task by its first line, at most 60 characters."""
    assert preview(text) == expected
