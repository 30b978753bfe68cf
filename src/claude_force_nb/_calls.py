"""What a call is, before it runs: `CallSpec` (what the caller asked for) and `plan_call`, the pure
decision of the exact request it sends (model and limits by precedence, system prompt, the delimited user
turn, whether to mark the system prompt for Anthropic prompt caching).

Kept apart from the orchestrator, which only schedules: everything here is deterministic and cheap, so it
is unit-tested without a server or an event loop, and reused by `orch.build_request()` to show exactly what
a call would send.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._agents import AgentSpec, build_user_turn
from ._exceptions import ConfigError
from ._limits import Budget
from ._pricing import RateCard
from ._request import ChatMessage, MessageRequest
from ._validate import check_bool, check_number, check_text, shorten

__all__ = [
    "CallSpec",
    "Plan",
    "as_call",
    "check_max_tokens",
    "estimate_tokens",
    "pacing_input_tokens",
    "plan_call",
    "preview",
    "worst_case_prompt_tokens",
]


def estimate_tokens(text: str) -> int:
    """A quick token estimate (4 characters a token), for rate limiting and prompt-cache thresholds."""
    return (len(text) + 3) // 4


MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens the API adds around each message (role and framing); the simulator counts the same."""


def pacing_input_tokens(request: MessageRequest) -> int:
    """The input tokens a rate limiter books for a request: 4 characters a token for the system prompt,
    the tools and each message, plus each message's framing tokens. This is exactly what the simulator
    counts; the orchestrator scales it up by the largest ratio the real API's counts have shown, and uses an
    exact count when a preview has one, so the tokens booked are never below the API's count (booking fewer
    is what runs a paced fan-out into 429s)."""
    tools = sum(estimate_tokens(compact) for compact in map(_compact_json, request.tools))
    return (
        estimate_tokens(request.system)
        + tools
        + sum(MESSAGE_OVERHEAD_TOKENS + estimate_tokens(m.content) for m in request.messages)
    )


def _compact_json(obj: Mapping[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in obj.items() if k != "cache_control"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def worst_case_prompt_tokens(request: MessageRequest) -> int:
    """An upper bound on the prompt's tokens: its UTF-8 bytes (a BPE token is at least one byte) plus room
    for the per-message framing tokens the API adds."""
    return request.utf8_length() + 8 * (len(request.messages) + 1) + 64


@dataclass(frozen=True, kw_only=True)
class CallSpec:
    """One call to make: which agent, what task, and per-call overrides (None = the agent's or the default).

    `system` replaces the agent's system prompt; `history` holds earlier turns of a conversation;
    `use_cache=False` neither reads nor writes the response cache; `refresh=True` skips the read and stores
    the fresh answer. `budget` is an extra spending cap for this call (and whatever else shares it, such as
    the other calls of one notebook cell), enforced on top of the orchestrator's own.
    """

    agent: str
    task: str
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    system: str | None = None
    history: tuple[ChatMessage, ...] = ()
    use_cache: bool = True
    refresh: bool = False
    previous_output: str | None = None
    previous_agent: str | None = None
    workflow: str | None = None
    workflow_step: int | None = None
    batch_id: str | None = None
    budget: Budget | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked where a call enters (execute_agent, an execute_multiple item, a magic cell), so a bad field
        # is refused with its name instead of failing deep inside pricing or the SDK, and never falls back
        # to a default: `max_tokens=0` or `model=""` is a mistake, not "use the default".
        check_text("agent", self.agent, empty_ok=True)  # validity and existence: at planning
        check_text("task", self.task, empty_ok=True)
        if self.model is not None:
            check_text("model", self.model)
        if self.max_tokens is not None:
            check_max_tokens(self.max_tokens)
        if self.temperature is not None:
            check_number("temperature", self.temperature, minimum=0.0, maximum=1.0)
        if self.system is not None:
            check_text("system", self.system, empty_ok=True)
        if not isinstance(self.history, tuple) or not all(isinstance(m, ChatMessage) for m in self.history):
            raise ConfigError("history must be a tuple of ChatMessage")
        check_bool("use_cache", self.use_cache)
        check_bool("refresh", self.refresh)
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise ConfigError(f"budget must be a Budget, got {type(self.budget).__name__}")
        if not isinstance(self.metadata, Mapping):
            raise ConfigError(f"metadata must be a mapping, got {type(self.metadata).__name__}")


@dataclass(frozen=True, slots=True)
class Plan:
    """A call with its agent resolved and its request built."""

    call: CallSpec
    spec: AgentSpec
    request: MessageRequest


def check_max_tokens(value: object) -> int:
    """`value` if it is a positive int (not a bool, not 2.0), else ConfigError naming max_tokens."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ConfigError(f"max_tokens must be a positive integer, got {shorten(value)}")
    return int(value)


def plan_call(
    call: CallSpec,
    spec: AgentSpec,
    *,
    default_model: str,
    default_max_tokens: int,
    rate_card: RateCard,
    prompt_caching: bool,
    prompt_cache_ttl: str,
) -> Plan:
    """The request `call` sends: call overrides beat the agent's settings, which beat the defaults.

    The system prompt is marked for prompt caching when it is long enough for the model to cache (the rate
    card's per-model minimum, estimated at 4 characters a token); a shorter mark would cost nothing but do
    nothing either.
    """
    # `is not None`, never truthiness: CallSpec refuses 0 and "", and a falsy value must not mean "default".
    model = _first_set(call.model, spec.model, default_model)
    max_tokens = check_max_tokens(_first_set(call.max_tokens, spec.max_tokens, default_max_tokens))
    temperature = call.temperature if call.temperature is not None else spec.temperature
    system = call.system if call.system is not None else spec.system_prompt()
    user_turn = build_user_turn(
        call.task, previous_output=call.previous_output, previous_agent=call.previous_agent
    )
    cacheable = prompt_caching and estimate_tokens(system) >= rate_card.min_cacheable_tokens(model)
    request = MessageRequest(
        model=model,
        system=system,
        messages=(*call.history, ChatMessage("user", user_turn)),
        max_tokens=max_tokens,
        temperature=temperature,
        cache_system=cacheable,
        cache_ttl="1h" if prompt_cache_ttl == "1h" else "5m",
    )
    return Plan(call, spec, request)


def _first_set(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def as_call(
    item: tuple[str, str] | CallSpec | Mapping[str, Any], *, use_cache: bool, refresh: bool, batch_id: str
) -> CallSpec | BaseException:
    """One item of `execute_multiple` as a CallSpec of the batch, or the error saying why it is unreadable."""
    try:
        if isinstance(item, str):
            raise TypeError("expected an (agent, task) pair, a CallSpec or a mapping, not a string")
        if isinstance(item, CallSpec):
            return item if item.batch_id is not None else replace(item, batch_id=batch_id)
        if isinstance(item, Mapping):
            return CallSpec(**{"use_cache": use_cache, "refresh": refresh, "batch_id": batch_id, **item})
        agent, task = item
        return CallSpec(agent=agent, task=task, use_cache=use_cache, refresh=refresh, batch_id=batch_id)
    except (TypeError, ValueError) as exc:
        return ValueError(f"cannot read call {item!r}: {exc}")


def preview(text: str, limit: int = 60) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"
