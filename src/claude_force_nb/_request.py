"""The value types that cross the backend seam: what we ask for and what comes back.

`MessageRequest` is the *semantic* request: everything that decides the model's answer, plus two transport
hints (`cache_system`, `cache_ttl`) that only decide how the request is billed. The response cache keys on
the semantic part (see `claude_force_nb._cache.key`); the backend turns the whole thing into SDK keyword
arguments. `Completion` is a finished answer with its usage; it is the only thing the cache stores.

Everything here is plain data: frozen, slotted, JSON-friendly, no SDK types, so the cache, the simulator
and the tests can build and compare them without importing `anthropic`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ChatMessage", "Completion", "MessageRequest", "RateLimitSnapshot", "Usage"]

Role = Literal["user", "assistant"]
CacheTTL = Literal["5m", "1h"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One conversation turn. Content is plain text: the orchestrator never sends anything else."""

    role: Role
    content: str

    def to_api(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRequest:
    """One Messages API request, as the orchestrator builds it.

    `system` is the full system prompt (agent definition plus contract). `tools`, `tool_choice` and
    `thinking` are JSON-like mappings passed through unchanged. `cache_system` asks the backend to mark the
    system prompt with `cache_control` (Anthropic prompt caching); it changes the bill, never the answer.
    """

    model: str
    system: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] = ()
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: Mapping[str, Any] | None = None
    thinking: Mapping[str, Any] | None = None
    cache_system: bool = False
    cache_ttl: CacheTTL = "5m"
    metadata: Mapping[str, Any] | None = None

    def utf8_length(self) -> int:
        """Bytes of prompt text in UTF-8: an upper bound on its BPE token count (each token is >= 1 byte)."""
        return len(self.system.encode()) + sum(len(m.content.encode()) for m in self.messages)

    def to_api_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `client.messages.create`.

        Optional sampling fields are omitted when unset rather than sent as defaults: newer models answer 400
        to any non-default temperature/top_p/top_k, so we only send what the user chose (in `extra_body`).
        """
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [m.to_api() for m in self.messages],
        }
        if self.system:
            if self.cache_system:
                control: dict[str, Any] = {"type": "ephemeral"}
                if self.cache_ttl != "5m":
                    control["ttl"] = self.cache_ttl
                kwargs["system"] = [{"type": "text", "text": self.system, "cache_control": control}]
            else:
                kwargs["system"] = self.system
        optional: dict[str, Any] = {
            "tool_choice": self.tool_choice,
            "thinking": self.thinking,
            "metadata": self.metadata,
        }
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        # The SDK (2.x) no longer has keyword arguments for sampling parameters, since current models reject
        # them; older models still accept them on the wire, so a value the user set travels in `extra_body`.
        sampling = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        extra_body = {k: v for k, v in sampling.items() if v is not None}
        if extra_body:
            kwargs["extra_body"] = extra_body
        if self.stop_sequences:
            kwargs["stop_sequences"] = list(self.stop_sequences)
        if self.tools:
            kwargs["tools"] = [dict(t) for t in self.tools]
        return kwargs


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token usage of one response, as billed. Cache writes are split by TTL when the API says so."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    """The part of `cache_creation_input_tokens` written with the 1-hour TTL (the rest is 5-minute)."""

    @property
    def prompt_tokens(self) -> int:
        """All input-side tokens: what decides a model's long-prompt price band."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_1h_input_tokens": self.cache_creation_1h_input_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(**{k: int(data.get(k) or 0) for k in _USAGE_FIELDS})


_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_1h_input_tokens",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitSnapshot:
    """What the `anthropic-ratelimit-*` headers of one response said: remaining and limit per kind.

    Keys are the header's kind (`requests`, `tokens`, `input-tokens`, `output-tokens`); resets are seconds
    from when the response arrived.
    """

    remaining: Mapping[str, int] = field(default_factory=dict)
    limit: Mapping[str, int] = field(default_factory=dict)
    reset_in_s: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """A finished answer: text, why it stopped, and what it cost in tokens."""

    text: str
    model: str
    stop_reason: str | None
    usage: Usage
    stop_sequence: str | None = None
    message_id: str | None = None
    request_id: str | None = None
    ttft_s: float | None = None
    rate_limits: RateLimitSnapshot | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the cache and replay bundles store (no transport details)."""
        return {
            "text": self.text,
            "model": self.model,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "message_id": self.message_id,
            "usage": self.usage.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Completion:
        """Inverse of `to_dict`; raises KeyError/TypeError/ValueError on a malformed mapping."""
        text = data["text"]
        model = data["model"]
        if not isinstance(text, str) or not isinstance(model, str):
            raise TypeError("completion text and model must be strings")
        usage = data.get("usage") or {}
        if not isinstance(usage, Mapping):
            raise TypeError("completion usage must be an object")
        stop_reason = data.get("stop_reason")
        stop_sequence = data.get("stop_sequence")
        message_id = data.get("message_id")
        return cls(
            text=text,
            model=model,
            stop_reason=stop_reason if isinstance(stop_reason, str) else None,
            stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
            message_id=message_id if isinstance(message_id, str) else None,
            usage=Usage.from_dict(usage),
        )
