"""The rate card: what a call costs, per model, from a data file shipped in the package.

Prices are dollars per million tokens for five kinds of token (input, 5-minute cache write, 1-hour cache
write, cache read, output), with an optional long-prompt band (a model billed at higher rates once the whole
prompt, cache reads and writes included, passes a threshold) and the batch discount.

A model the card does not know is *unpriced*: its cost is NaN and one `UnpricedModelWarning` is issued per
model. Never $0 (that would hide spend) and never a neighbour's price (claude-opus-4-9 is not 4-8): the
only aliasing is dropping a date suffix, because a dated id is the same model as its family id.
"""

from __future__ import annotations

import json
import math
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError
from ._request import Usage

__all__ = [
    "DEFAULT_MIN_CACHEABLE_TOKENS",
    "ModelPrice",
    "RateCard",
    "Rates",
    "UnpricedModelWarning",
    "normalize_model_id",
]

DEFAULT_MIN_CACHEABLE_TOKENS = 1024
_PER = 1_000_000.0
_RATE_FIELDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
# claude-sonnet-4-5-20250929, claude-sonnet-4-5@20250929 (Vertex), anthropic.claude-...-v1:0 (Bedrock)
_MODEL_ID = re.compile(r"(?:anthropic\.)?(?P<family>claude-[a-z0-9.-]+?)(?:[-@]\d{8})?(?:-v\d+(?::\d+)?)?")


class UnpricedModelWarning(UserWarning):
    """A model with no entry in the rate card: its calls are recorded with cost NaN."""


def normalize_model_id(model: str) -> str:
    """The family id of a model id: date and platform decorations removed, nothing else changed."""
    match = _MODEL_ID.fullmatch(model.strip())
    return match.group("family") if match else model.strip()


@dataclass(frozen=True, kw_only=True)
class Rates:
    """Dollars per million tokens, one figure per kind of token."""

    input: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    output: float

    def cost(self, usage: Usage) -> float:
        write_1h = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
        write_5m = usage.cache_creation_input_tokens - write_1h
        return (
            usage.input_tokens * self.input
            + write_5m * self.cache_write_5m
            + write_1h * self.cache_write_1h
            + usage.cache_read_input_tokens * self.cache_read
            + usage.output_tokens * self.output
        ) / _PER


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """One model's prices: a base band and, for some models, a long-prompt band."""

    model: str
    base: Rates
    min_cacheable_tokens: int = DEFAULT_MIN_CACHEABLE_TOKENS
    long_prompt: Rates | None = None
    long_prompt_above: int | None = None

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The band a request falls in, by its whole prompt size (input + cache writes + cache reads)."""
        above = self.long_prompt_above
        if self.long_prompt is not None and above is not None and prompt_tokens > above:
            return self.long_prompt
        return self.base


def _rates(entry: Mapping[str, Any], where: str) -> Rates:
    values: dict[str, float] = {}
    for name in _RATE_FIELDS:
        value = entry.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
            raise ConfigError(f"rate card {where}.{name}: expected a non-negative number, got {value!r}")
        values[name] = float(value)
    return Rates(**values)


def _model_price(model: str, entry: Mapping[str, Any], base: ModelPrice | None) -> ModelPrice:
    """Build a ModelPrice from a card entry; fields missing from an override keep `base`'s values."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"rate card models.{model}: expected an object, got {type(entry).__name__}")
    merged: dict[str, Any] = {}
    if base is not None:
        merged.update({name: getattr(base.base, name) for name in _RATE_FIELDS})
        merged["min_cacheable_tokens"] = base.min_cacheable_tokens
    merged.update(entry)
    rates = _rates(merged, f"models.{model}")
    min_tokens = merged.get("min_cacheable_tokens", DEFAULT_MIN_CACHEABLE_TOKENS)
    if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 0:
        raise ConfigError(f"rate card models.{model}.min_cacheable_tokens: expected an int >= 0")
    long_prompt, above = (base.long_prompt, base.long_prompt_above) if base is not None else (None, None)
    band = entry.get("long_prompt")
    if band is not None:
        if not isinstance(band, Mapping):
            raise ConfigError(f"rate card models.{model}.long_prompt: expected an object")
        above = band.get("above_tokens")
        if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
            raise ConfigError(f"rate card models.{model}.long_prompt.above_tokens: expected a positive int")
        long_prompt = _rates(band, f"models.{model}.long_prompt")
    return ModelPrice(
        model=model,
        base=rates,
        min_cacheable_tokens=min_tokens,
        long_prompt=long_prompt,
        long_prompt_above=above,
    )


class RateCard:
    """Prices by model id. Immutable: `with_overrides` returns a new card.

    `RateCard.default()` is the card shipped in the package. Override or extend it with a mapping shaped like
    the data file's `models` section (`{"my-model": {"input": 1, "output": 2, ...}}`; partial entries for
    known models keep their other figures) or a path to a JSON file with a `models` section.
    """

    def __init__(self, models: Mapping[str, ModelPrice], *, batch_discount: float = 0.5) -> None:
        if not 0.0 <= batch_discount <= 1.0:
            raise ConfigError(f"rate card batch_discount must be within 0..1, got {batch_discount}")
        self._models = dict(models)
        self.batch_discount = batch_discount
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> RateCard:
        """The rate card shipped with the package (one shared instance)."""
        return _default_card()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RateCard:
        """A card from a mapping with a `models` section (and optionally `batch_discount`)."""
        models = data.get("models")
        if not isinstance(models, Mapping):
            raise ConfigError("rate card: expected an object with a 'models' object")
        prices = {name: _model_price(name, entry, None) for name, entry in models.items()}
        discount = data.get("batch_discount", 0.5)
        if isinstance(discount, bool) or not isinstance(discount, (int, float)):
            raise ConfigError("rate card batch_discount: expected a number")
        return cls(prices, batch_discount=float(discount))

    @classmethod
    def from_file(cls, path: str | Path) -> RateCard:
        return cls.from_mapping(_read_json(Path(path)))

    def with_overrides(self, overrides: Mapping[str, Any] | str | Path) -> RateCard:
        """A new card with some models added or changed (a `models`-shaped mapping or a card file)."""
        if isinstance(overrides, (str, Path)):
            data = _read_json(Path(overrides))
            entries = data.get("models")
            if not isinstance(entries, Mapping):
                raise ConfigError(f"rate card {overrides}: expected a 'models' object")
        else:
            nested = overrides.get("models")
            entries = nested if isinstance(nested, Mapping) else overrides
        models = dict(self._models)
        for name, entry in entries.items():
            family = normalize_model_id(str(name))
            models[family] = _model_price(family, entry, models.get(family))
        return RateCard(models, batch_discount=self.batch_discount)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted(self._models))

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of a model id (dated ids map to their family), or None when it is unpriced."""
        return self._models.get(model) or self._models.get(normalize_model_id(model))

    def _unpriced(self, model: str) -> float:
        with self._lock:
            first = model not in self._warned
            self._warned.add(model)
        if first:
            warnings.warn(
                f"model {model!r} is not in the rate card, so its cost is recorded as NaN; "
                "add it with RateCard.with_overrides({...}) or the orchestrator's pricing= argument",
                UnpricedModelWarning,
                stacklevel=3,
            )
        return math.nan

    def cost(self, model: str, usage: Usage, *, batch: bool = False) -> float:
        """Dollars for one response's usage; NaN (with one warning per model) when the model is unpriced."""
        price = self.lookup(model)
        if price is None:
            return self._unpriced(model)
        amount = price.rates_for(usage.prompt_tokens).cost(usage)
        return amount * (1.0 - self.batch_discount) if batch else amount

    def worst_case_cost(
        self, model: str, *, prompt_tokens: int, max_tokens: int, cache_write_ttl: str | None = None
    ) -> float:
        """An upper bound on one call's cost, for budget reservations; NaN when the model is unpriced.

        Every prompt token is priced at the dearest input-side rate the call could be billed at (a cache
        write when the prompt is marked for caching), and the answer at `max_tokens` output tokens.
        """
        price = self.lookup(model)
        if price is None:
            return self._unpriced(model)
        rates = price.rates_for(prompt_tokens)
        input_rate = rates.input
        if cache_write_ttl == "5m":
            input_rate = max(input_rate, rates.cache_write_5m)
        elif cache_write_ttl == "1h":
            input_rate = max(input_rate, rates.cache_write_1h)
        return (prompt_tokens * input_rate + max_tokens * rates.output) / _PER

    def min_cacheable_tokens(self, model: str) -> int:
        """The shortest prompt prefix the model will cache (unknown models: the common 1024)."""
        price = self.lookup(model)
        return price.min_cacheable_tokens if price is not None else DEFAULT_MIN_CACHEABLE_TOKENS

    def with_min_cacheable_tokens(self, model: str, tokens: int) -> RateCard:
        """A new card with one model's prompt-cache minimum changed."""
        price = self.lookup(model)
        if price is None:
            raise ConfigError(f"model {model!r} is not in the rate card")
        models = dict(self._models)
        models[price.model] = replace(price, min_cacheable_tokens=tokens)
        return RateCard(models, batch_discount=self.batch_discount)

    def __repr__(self) -> str:
        return f"RateCard({len(self._models)} models, batch_discount={self.batch_discount})"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"rate card {path}: cannot read ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"rate card {path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"rate card {path}: expected a JSON object")
    return data


@cache
def _default_card() -> RateCard:
    text = resources.files("claude_force_nb").joinpath("data/rate_card.json").read_text(encoding="utf-8")
    return RateCard.from_mapping(json.loads(text))
