"""SimConfig: every knob of the simulator, validated once, frozen afterwards.

The same dataclass travels to a subprocess as JSON (`to_dict` / `from_dict`), so process mode and thread mode
run exactly the same configuration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._faults import FAULT_KINDS

__all__ = [
    "DEFAULT_BATCH_EXPIRY_S",
    "DEFAULT_BATCH_ITEMS_PER_S",
    "DEFAULT_BATCH_MAX_BYTES",
    "DEFAULT_BATCH_MAX_REQUESTS",
    "DEFAULT_CACHE_TTL_1H_S",
    "DEFAULT_CACHE_TTL_5M_S",
    "DEFAULT_HANG_S",
    "DEFAULT_HOST",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DEFAULT_MIN_CACHE_TOKENS",
    "DEFAULT_MIN_OUTPUT_TOKENS",
    "DEFAULT_RECORD_LIMIT",
    "DEFAULT_STREAM_CHUNK_TOKENS",
    "SimConfig",
    "merge_options",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MIN_OUTPUT_TOKENS = 40
DEFAULT_MAX_OUTPUT_TOKENS = 400
DEFAULT_HANG_S = 30.0
# The real API's smallest cacheable prefix for most models; Haiku-class models need more, which a mapping
# such as {"claude-haiku": 2048} expresses.
DEFAULT_MIN_CACHE_TOKENS = 1024
DEFAULT_CACHE_TTL_5M_S = 300.0
DEFAULT_CACHE_TTL_1H_S = 3600.0
DEFAULT_RECORD_LIMIT = 1000
DEFAULT_STREAM_CHUNK_TOKENS = 3
# Message Batches: the real service's limits and expiry; processing speed is the simulator's own knob.
DEFAULT_BATCH_ITEMS_PER_S = 1000.0
DEFAULT_BATCH_EXPIRY_S = 24 * 3600.0
DEFAULT_BATCH_MAX_REQUESTS = 100_000
DEFAULT_BATCH_MAX_BYTES = 256 * 1024 * 1024

# "status" needs a status code, which a bare probability cannot carry; script it instead.
_RATE_FAULT_KINDS = FAULT_KINDS - {"status"}


def _check_int(name: str, value: object, *, minimum: int) -> int:
    # bool is an int subclass; `port=True` is a mistake, not port 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_seconds(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """How the simulated Messages API behaves; see the package docstring for the meaning of each field."""

    host: str = DEFAULT_HOST
    port: int = 0
    seed: int = 0
    ttft_s: float = 0.0
    per_token_s: float = 0.0
    min_output_tokens: int = DEFAULT_MIN_OUTPUT_TOKENS
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    api_key: str | None = field(default=None, repr=False)  # never shown in a repr
    models: frozenset[str] | None = None
    retired_models: frozenset[str] = frozenset()
    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None
    count_tokens_per_minute: int | None = None
    rate_limit_burst_s: float = 1.0
    fault_rates: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    hang_s: float = DEFAULT_HANG_S
    retry_after_ms: bool = True
    min_cache_tokens: int | Mapping[str, int] = DEFAULT_MIN_CACHE_TOKENS
    cache_ttl_5m_s: float = DEFAULT_CACHE_TTL_5M_S
    cache_ttl_1h_s: float = DEFAULT_CACHE_TTL_1H_S
    record_limit: int = DEFAULT_RECORD_LIMIT
    stream_chunk_tokens: int = DEFAULT_STREAM_CHUNK_TOKENS
    batch_items_per_s: float = DEFAULT_BATCH_ITEMS_PER_S
    batch_error_rate: float = 0.0
    batch_expiry_s: float = DEFAULT_BATCH_EXPIRY_S
    batch_max_requests: int = DEFAULT_BATCH_MAX_REQUESTS
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty string, got {self.host!r}")
        _check_int("port", self.port, minimum=0)
        if self.port > 65535:
            raise ValueError(f"port must be <= 65535, got {self.port}")
        _check_int("seed", self.seed, minimum=-(2**63))
        for name in ("ttft_s", "per_token_s", "hang_s", "cache_ttl_5m_s", "cache_ttl_1h_s"):
            object.__setattr__(self, name, _check_seconds(name, getattr(self, name)))
        _check_int("min_output_tokens", self.min_output_tokens, minimum=1)
        _check_int("max_output_tokens", self.max_output_tokens, minimum=1)
        if self.min_output_tokens > self.max_output_tokens:
            raise ValueError(
                f"min_output_tokens ({self.min_output_tokens}) must be <= max_output_tokens "
                f"({self.max_output_tokens})"
            )
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ValueError("api_key must be a non-empty string or None")
        object.__setattr__(self, "models", self._normalize_models(self.models))
        retired = self._normalize_models(self.retired_models) if self.retired_models else frozenset()
        object.__setattr__(self, "retired_models", retired)
        for name in (
            "requests_per_minute",
            "input_tokens_per_minute",
            "output_tokens_per_minute",
            "count_tokens_per_minute",
        ):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        burst = _check_seconds("rate_limit_burst_s", self.rate_limit_burst_s)
        if burst <= 0:
            raise ValueError(f"rate_limit_burst_s must be > 0, got {burst}")
        object.__setattr__(self, "rate_limit_burst_s", burst)
        object.__setattr__(self, "fault_rates", self._normalize_rates(self.fault_rates))
        if not isinstance(self.retry_after_ms, bool):
            raise ValueError(f"retry_after_ms must be a bool, got {self.retry_after_ms!r}")
        object.__setattr__(self, "min_cache_tokens", self._normalize_min_cache(self.min_cache_tokens))
        _check_int("record_limit", self.record_limit, minimum=0)
        _check_int("stream_chunk_tokens", self.stream_chunk_tokens, minimum=1)
        object.__setattr__(self, "batch_expiry_s", _check_seconds("batch_expiry_s", self.batch_expiry_s))
        speed = self.batch_items_per_s
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.0 <= speed < math.inf:
            raise ValueError(f"batch_items_per_s must be a finite number >= 0 (0: never), got {speed!r}")
        object.__setattr__(self, "batch_items_per_s", float(speed))
        rate = self.batch_error_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"batch_error_rate must be a probability in [0, 1], got {rate!r}")
        object.__setattr__(self, "batch_error_rate", float(rate))
        _check_int("batch_max_requests", self.batch_max_requests, minimum=1)
        _check_int("batch_max_bytes", self.batch_max_bytes, minimum=1)

    @staticmethod
    def _normalize_models(models: object) -> frozenset[str] | None:
        if models is None:
            return None
        # A bare string is iterable too; frozenset("claude") would silently allow the models "c", "l", ...
        if isinstance(models, str) or not isinstance(models, Iterable):
            raise ValueError(f"models must be None or a collection of model ids, got {models!r}")
        result = frozenset(models)
        if not result or not all(isinstance(m, str) and m for m in result):
            raise ValueError("models must contain at least one non-empty model id string")
        return result

    @staticmethod
    def _normalize_rates(rates: object) -> Mapping[str, float]:
        if not isinstance(rates, Mapping):
            raise ValueError(f"fault_rates must be a mapping of fault kind -> probability, got {rates!r}")
        clean: dict[str, float] = {}
        for kind, p in sorted(rates.items()):
            if kind not in _RATE_FAULT_KINDS:
                raise ValueError(
                    f"fault_rates: unknown or unsupported kind {kind!r}; "
                    f"use one of {sorted(_RATE_FAULT_KINDS)}"
                    " (script a Fault('status', status=...) for other codes)"
                )
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"fault_rates[{kind!r}] must be a probability in [0, 1], got {p!r}")
            clean[kind] = float(p)
        if sum(clean.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault_rates must sum to <= 1, got {sum(clean.values())}")
        return MappingProxyType(clean)

    @staticmethod
    def _normalize_min_cache(value: object) -> int | Mapping[str, int]:
        if not isinstance(value, Mapping):
            return _check_int("min_cache_tokens", value, minimum=1)
        clean: dict[str, int] = {}
        for prefix, n in value.items():
            if not isinstance(prefix, str):
                raise ValueError(f"min_cache_tokens keys must be model-id prefixes (str), got {prefix!r}")
            clean[prefix] = _check_int(f"min_cache_tokens[{prefix!r}]", n, minimum=1)
        return MappingProxyType(clean)

    def is_retired(self, model: str) -> bool:
        """Whether `model` (or its dated id, family-YYYYMMDD) is one of `retired_models`."""
        if model in self.retired_models:
            return True
        family, _, suffix = model.rpartition("-")
        return len(suffix) == 8 and suffix.isdigit() and family in self.retired_models

    def min_cache_tokens_for(self, model: str) -> int:
        """The smallest cacheable prefix for `model`: the longest matching prefix in the mapping wins."""
        if isinstance(self.min_cache_tokens, int):
            return self.min_cache_tokens
        best, best_len = DEFAULT_MIN_CACHE_TOKENS, -1
        for prefix, n in self.min_cache_tokens.items():
            if model.startswith(prefix) and len(prefix) > best_len:
                best, best_len = n, len(prefix)
        return best

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that `from_dict` turns back into an equal config."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimConfig:
        """Build a config from `to_dict` output (or any mapping of field names); unknown names are errors."""
        return merge_options(None, dict(data))


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(SimConfig))


def merge_options(config: SimConfig | None, options: Mapping[str, Any]) -> SimConfig:
    """`config` (or the defaults) with `options` applied on top; unknown option names raise ValueError."""
    unknown = sorted(set(options) - _FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown simulator option(s) {unknown}; valid options are {sorted(_FIELD_NAMES)}")
    if config is None:
        return SimConfig(**options)
    if not isinstance(config, SimConfig):
        raise ValueError(f"config must be a SimConfig, got {type(config).__name__}")
    return dataclasses.replace(config, **options) if options else config
