"""The rate card: what a call costs, per model and per date, and where each model is in its life.

Prices are dollars per million tokens for five kinds of token (input, 5-minute cache write, 1-hour cache
write, cache read, output), with an optional long-prompt band (a model billed at higher rates once the whole
prompt, cache reads and writes included, passes a threshold) and the batch discount.

**Prices change on dates.** Each model has one or more *price periods*, each starting on a date and naming
the source of its figures; `cost(model, usage, at=...)` prices a call at the period in force on the call's
date (the orchestrator passes the run record's start), so a September run log keeps September's rates. A
period lists only what changed; the rest carries over from the period before.

**Models retire.** A model's status is `active`, `legacy` (still served, superseded), `deprecated` (from its
deprecation date) or `retired` (from its retirement date), with the suggested replacement; `lifecycle(model,
at=...)` says which applies on a date, so the card never needs editing on the day a model retires.

**Two file formats.** Format 2 (the shipped card) has `prices` periods, `aliases`, `status`, `deprecated`,
`retires`, `replacement` and a `sources` table. Format 1 (a flat `{"input": ..., "output": ...}` entry per
model) still loads, as one period valid at every date: a user's override file keeps working.

A model the card does not know is *unpriced*: its cost is NaN and one `UnpricedModelWarning` is issued per
model. Never $0 (that would hide spend) and never a neighbour's price (claude-opus-4-9 is not 4-8): the
only aliasing is a card's explicit `aliases` and dropping a date suffix, because a dated id is the same model
as its family id.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ._exceptions import ClaudeForceWarning, ConfigError
from ._request import Usage

__all__ = [
    "DEFAULT_MIN_CACHEABLE_TOKENS",
    "Lifecycle",
    "LifecycleNotices",
    "ModelInfo",
    "ModelPrice",
    "RateCard",
    "Rates",
    "UnpricedModelWarning",
    "When",
    "format_cost",
    "normalize_model_id",
]

DEFAULT_MIN_CACHEABLE_TOKENS = 1024
_PER = 1_000_000.0
_RATE_FIELDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
_STATUSES = ("active", "legacy", "deprecated", "retired")
# claude-sonnet-4-5-20250929, claude-sonnet-4-5@20250929 (Vertex), anthropic.claude-...-v1:0 (Bedrock)
_MODEL_ID = re.compile(r"(?:anthropic\.)?(?P<family>claude-[a-z0-9.-]+?)(?:[-@]\d{8})?(?:-v\d+(?::\d+)?)?")

Status = Literal["active", "legacy", "deprecated", "retired"]
When = datetime | date | float | None
"""A call's date: a datetime (naive = UTC), a date, a Unix timestamp (a run record's `started_at`), or None
for now."""


class UnpricedModelWarning(ClaudeForceWarning):
    """A model with no entry in the rate card: its calls are recorded with cost NaN."""


def format_cost(value: float) -> str:
    """Dollars for people: NaN is 'unpriced', amounts under $100 keep four decimals (a budget of $0.0001 is
    not "$0.00"), larger ones two."""
    if math.isnan(value):
        return "unpriced"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def normalize_model_id(model: str) -> str:
    """The family id of a model id: date and platform decorations removed, nothing else changed."""
    if not isinstance(model, str):
        raise TypeError(f"a model id must be a string, got {type(model).__name__}")
    match = _MODEL_ID.fullmatch(model.strip())
    return match.group("family") if match else model.strip()


def _day(when: When) -> date:
    """The UTC calendar day of `when` (prices and lifecycles change at the start of a UTC day)."""
    if when is None:
        return datetime.now(timezone.utc).date()
    if isinstance(when, datetime):
        return (when if when.tzinfo is None else when.astimezone(timezone.utc)).date()
    if isinstance(when, date):
        return when
    if isinstance(when, bool) or not isinstance(when, (int, float)) or math.isnan(when):
        raise TypeError(f"a call's date must be a datetime, date or Unix time, got {when!r}")
    return datetime.fromtimestamp(when, timezone.utc).date()


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
    """One model's prices over one period: a base band and, for some models, a long-prompt band.

    `valid_from` is the first day the figures apply (None: since before the card's history); `source` is the
    key of the card's `sources` entry the figures come from (None for a user's own figures).
    """

    model: str
    base: Rates
    min_cacheable_tokens: int = DEFAULT_MIN_CACHEABLE_TOKENS
    long_prompt: Rates | None = None
    long_prompt_above: int | None = None
    valid_from: date | None = None
    source: str | None = None

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The band a request falls in, by its whole prompt size (input + cache writes + cache reads)."""
        above = self.long_prompt_above
        if self.long_prompt is not None and above is not None and prompt_tokens > above:
            return self.long_prompt
        return self.base


@dataclass(frozen=True, kw_only=True)
class Lifecycle:
    """Where a model is in its life on one date."""

    model: str
    status: Status
    deprecated: date | None = None
    retires: date | None = None
    replacement: str | None = None

    def message(self) -> str:
        """One readable line: what the status means for the user and what to use instead."""
        instead = f"use {self.replacement} instead" if self.replacement else "choose a current model"
        if self.status == "retired":
            when = f" on {self.retires.isoformat()}" if self.retires else ""
            return (
                f"{self.model} was retired{when} and the API no longer serves it; {instead} "
                "(allow_retired=True sends it anyway, for a proxy that still serves it)"
            )
        if self.status == "deprecated":
            when = f" on {self.retires.isoformat()}" if self.retires else " soon"
            return f"{self.model} is deprecated and retires{when}; {instead}"
        if self.status == "legacy":
            return f"{self.model} is a legacy model (still served); {instead}"
        return f"{self.model} is active"


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """Everything the card says about one model: dated prices, aliases and lifecycle."""

    model: str
    periods: tuple[ModelPrice, ...]
    aliases: tuple[str, ...] = ()
    status: Status = "active"
    released: date | None = None
    deprecated: date | None = None
    retires: date | None = None
    replacement: str | None = None
    lifecycle_source: str | None = None
    notes: str | None = None

    def price_at(self, day: date) -> ModelPrice:
        """The period in force on `day` (a day before the first period gets the first period's prices)."""
        chosen = self.periods[0]
        for period in self.periods[1:]:
            if period.valid_from is not None and period.valid_from <= day:
                chosen = period
        return chosen

    def lifecycle_at(self, day: date) -> Lifecycle:
        status: Status = self.status
        if self.retires is not None and day >= self.retires:
            status = "retired"
        elif self.deprecated is not None and day >= self.deprecated:
            status = "deprecated"
        elif status in ("deprecated", "retired"):
            status = "active" if self.deprecated is not None or self.retires is not None else status
        return Lifecycle(
            model=self.model,
            status=status,
            deprecated=self.deprecated,
            retires=self.retires,
            replacement=self.replacement,
        )


# -- reading card entries ------------------------------------------------------------------------------


def _rates(entry: Mapping[str, Any], where: str) -> Rates:
    values: dict[str, float] = {}
    for name in _RATE_FIELDS:
        value = entry.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
            raise ConfigError(f"rate card {where}.{name}: expected a non-negative number, got {value!r}")
        values[name] = float(value)
    return Rates(**values)


def _date(value: object, where: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"rate card {where}: expected a date as 'YYYY-MM-DD', got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"rate card {where}: expected a date as 'YYYY-MM-DD', got {value!r}") from None


def _band(entry: Mapping[str, Any], where: str, base: ModelPrice | None) -> tuple[Rates | None, int | None]:
    long_prompt, above = (base.long_prompt, base.long_prompt_above) if base is not None else (None, None)
    band = entry.get("long_prompt")
    if band is None:
        return long_prompt, above
    if not isinstance(band, Mapping):
        raise ConfigError(f"rate card {where}.long_prompt: expected an object")
    merged: dict[str, Any] = {}
    if long_prompt is not None:
        merged.update({name: getattr(long_prompt, name) for name in _RATE_FIELDS})
        merged["above_tokens"] = above
    merged.update(band)
    above = merged.get("above_tokens")
    if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
        raise ConfigError(f"rate card {where}.long_prompt.above_tokens: expected a positive int")
    return _rates(merged, f"{where}.long_prompt"), above


def _period(model: str, entry: Mapping[str, Any], base: ModelPrice | None, where: str) -> ModelPrice:
    """One price period; fields it does not give keep `base`'s values (the period before, or the model's
    current prices for an override)."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"rate card {where}: expected an object, got {type(entry).__name__}")
    merged: dict[str, Any] = {}
    if base is not None:
        merged.update({name: getattr(base.base, name) for name in _RATE_FIELDS})
        merged["min_cacheable_tokens"] = base.min_cacheable_tokens
    merged.update(entry)
    rates = _rates(merged, where)
    min_tokens = merged.get("min_cacheable_tokens", DEFAULT_MIN_CACHEABLE_TOKENS)
    if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 0:
        raise ConfigError(f"rate card {where}.min_cacheable_tokens: expected an int >= 0")
    long_prompt, above = _band(entry, where, base)
    source = entry.get("source")
    if source is not None and not isinstance(source, str):
        raise ConfigError(f"rate card {where}.source: expected the key of a 'sources' entry")
    return ModelPrice(
        model=model,
        base=rates,
        min_cacheable_tokens=min_tokens,
        long_prompt=long_prompt,
        long_prompt_above=above,
        valid_from=_date(entry.get("from"), f"{where}.from"),
        source=source,
    )


def _model_info(model: str, entry: Mapping[str, Any], base: ModelInfo | None) -> ModelInfo:
    """A card entry, format 2 (with `prices`) or format 1 (flat rates: one period valid at every date).

    An entry for a model `base` already has (an override) keeps what it does not say: a flat entry is one
    period made of the latest prices with its figures on top; a format-2 entry's fields replace base's.
    """
    where = f"models.{model}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"rate card {where}: expected an object, got {type(entry).__name__}")
    raw_prices = entry.get("prices")
    if raw_prices is None:  # format 1
        latest = base.periods[-1] if base is not None else None
        flat = {k: v for k, v in entry.items() if k not in ("from", "source")}
        period = replace(_period(model, flat, latest, where), valid_from=None, source=entry.get("source"))
        periods: tuple[ModelPrice, ...] = (period,)
    else:
        if not isinstance(raw_prices, Sequence) or isinstance(raw_prices, str) or not raw_prices:
            raise ConfigError(f"rate card {where}.prices: expected a non-empty list of price periods")
        found: list[ModelPrice] = []
        for i, raw in enumerate(raw_prices):
            previous = found[-1] if found else None
            if previous is None and isinstance(raw, Mapping) and "min_cacheable_tokens" not in raw:
                raw = {**raw, "min_cacheable_tokens": entry.get("min_cacheable_tokens", 1024)}
            found.append(_period(model, raw, previous, f"{where}.prices[{i}]"))
        starts = [p.valid_from for p in found[1:]]
        if any(s is None for s in starts) or starts != sorted(s for s in starts if s is not None):
            raise ConfigError(f"rate card {where}.prices: every later period needs a 'from' date, in order")
        periods = tuple(found)
    fields: dict[str, Any] = {}
    if base is not None:
        fields = {
            "aliases": base.aliases,
            "status": base.status,
            "released": base.released,
            "deprecated": base.deprecated,
            "retires": base.retires,
            "replacement": base.replacement,
            "lifecycle_source": base.lifecycle_source,
            "notes": base.notes,
        }
    status = entry.get("status", fields.get("status", "active"))
    if status not in _STATUSES:
        raise ConfigError(f"rate card {where}.status: expected one of {', '.join(_STATUSES)}, got {status!r}")
    aliases = entry.get("aliases", fields.get("aliases", ()))
    if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError(f"rate card {where}.aliases: expected a list of model ids")
    for name in ("released", "deprecated", "retires"):
        if name in entry:
            fields[name] = _date(entry[name], f"{where}.{name}")
    for name in ("replacement", "notes"):
        if name in entry:
            if entry[name] is not None and not isinstance(entry[name], str):
                raise ConfigError(f"rate card {where}.{name}: expected text")
            fields[name] = entry[name]
    if "status_source" in entry:
        fields["lifecycle_source"] = entry["status_source"]
    fields["aliases"] = tuple(aliases)
    fields["status"] = status
    return ModelInfo(model=model, periods=periods, **fields)


# -- the card ------------------------------------------------------------------------------------------


class RateCard:
    """Prices and lifecycles by model id. Immutable: `with_overrides` returns a new card.

    `RateCard.default()` is the card shipped in the package. Override or extend it with a mapping shaped like
    the data file's `models` section (`{"my-model": {"input": 1, "output": 2, ...}}`; partial entries for
    known models keep their other figures) or a path to a JSON file with a `models` section, in either
    format.
    """

    def __init__(
        self,
        models: Mapping[str, ModelInfo | ModelPrice],
        *,
        batch_discount: float = 0.5,
        sources: Mapping[str, Mapping[str, Any]] | None = None,
        as_of: date | None = None,
    ) -> None:
        if not 0.0 <= batch_discount <= 1.0:
            raise ConfigError(f"rate card batch_discount must be within 0..1, got {batch_discount}")
        self._models: dict[str, ModelInfo] = {
            name: info if isinstance(info, ModelInfo) else ModelInfo(model=name, periods=(info,))
            for name, info in models.items()
        }
        self._aliases = {alias: name for name, info in self._models.items() for alias in info.aliases}
        self.batch_discount = batch_discount
        self.sources: Mapping[str, Mapping[str, Any]] = dict(sources or {})
        self.as_of = as_of
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> RateCard:
        """The rate card shipped with the package (one shared instance)."""
        return _default_card()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RateCard:
        """A card from a mapping with a `models` section (and optionally `batch_discount`, `sources`)."""
        models = data.get("models")
        if not isinstance(models, Mapping):
            raise ConfigError("rate card: expected an object with a 'models' object")
        version = data.get("format", 1)
        if version not in (1, 2):
            raise ConfigError(f"rate card format {version!r}: this version reads formats 1 and 2")
        infos = {name: _model_info(name, entry, None) for name, entry in models.items()}
        discount = data.get("batch_discount", 0.5)
        if isinstance(discount, bool) or not isinstance(discount, (int, float)):
            raise ConfigError("rate card batch_discount: expected a number")
        sources = data.get("sources") or {}
        if not isinstance(sources, Mapping):  # format 1 kept a list of free-text sources
            sources = {}
        as_of = _date(data.get("as_of"), "as_of") if isinstance(data.get("as_of"), str) else None
        return cls(infos, batch_discount=float(discount), sources=sources, as_of=as_of)

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
            family = self._canonical(str(name)) or normalize_model_id(str(name))
            models[family] = _model_info(family, entry, models.get(family))
        return RateCard(models, batch_discount=self.batch_discount, sources=self.sources, as_of=self.as_of)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted(self._models))

    def _canonical(self, model: str) -> str | None:
        if model in self._models:
            return model
        if model in self._aliases:
            return self._aliases[model]
        family = normalize_model_id(model)
        if family in self._models:
            return family
        return self._aliases.get(family)

    def info(self, model: str) -> ModelInfo | None:
        """Everything the card says about a model id (aliases and dated ids map to it), or None."""
        name = self._canonical(model)
        return self._models[name] if name is not None else None

    def lookup(self, model: str, at: When = None) -> ModelPrice | None:
        """The price of a model id in force at `at` (default: now), or None when it is unpriced."""
        info = self.info(model)
        return info.price_at(_day(at)) if info is not None else None

    def lifecycle(self, model: str, at: When = None) -> Lifecycle | None:
        """The model's status on the day of `at` (default: today), or None for a model the card lacks."""
        info = self.info(model)
        return info.lifecycle_at(_day(at)) if info is not None else None

    def closest(self, model: str, n: int = 3) -> list[str]:
        """Known model ids that look like `model` (for an "unpriced" message)."""
        return difflib.get_close_matches(normalize_model_id(model), self.models, n=n, cutoff=0.6)

    def _unpriced(self, model: str) -> float:
        with self._lock:
            first = model not in self._warned
            self._warned.add(model)
        if first:
            near = self.closest(model)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            warnings.warn(
                f"model {model!r} is not in the rate card{hint}, so its cost is recorded as NaN; "
                "add it with RateCard.with_overrides({...}) or the orchestrator's pricing= argument",
                UnpricedModelWarning,
                stacklevel=3,
            )
        return math.nan

    def cost(self, model: str, usage: Usage, *, batch: bool = False, at: When = None) -> float:
        """Dollars for one response's usage at the prices in force at `at` (default: now); NaN (with one
        warning per model) when the model is unpriced."""
        price = self.lookup(model, at)
        if price is None:
            return self._unpriced(model)
        amount = price.rates_for(usage.prompt_tokens).cost(usage)
        return amount * (1.0 - self.batch_discount) if batch else amount

    def worst_case_cost(
        self,
        model: str,
        *,
        prompt_tokens: int,
        max_tokens: int,
        cache_write_ttl: str | None = None,
        at: When = None,
    ) -> float:
        """An upper bound on one call's cost, for budget reservations; NaN when the model is unpriced.

        Every prompt token is priced at the dearest input-side rate the call could be billed at (a cache
        write when the prompt is marked for caching), and the answer at `max_tokens` output tokens.
        """
        price = self.lookup(model, at)
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
        """A new card with one model's prompt-cache minimum changed (in every period)."""
        info = self.info(model)
        if info is None:
            raise ConfigError(f"model {model!r} is not in the rate card")
        models = dict(self._models)
        periods = tuple(replace(p, min_cacheable_tokens=tokens) for p in info.periods)
        models[info.model] = replace(info, periods=periods)
        return RateCard(models, batch_discount=self.batch_discount, sources=self.sources, as_of=self.as_of)

    def source_url(self, key: str | None) -> str | None:
        """The URL of a `sources` entry (None when the key is unknown or the figures are the user's)."""
        entry = self.sources.get(key) if key is not None else None
        url = entry.get("url") if isinstance(entry, Mapping) else None
        return url if isinstance(url, str) else None

    def to_frame(self, at: When = None) -> Any:
        """One row per model: prices in force and status on the day of `at` (default: today), with sources."""
        import pandas as pd

        day = _day(at)
        rows = []
        for name in self.models:
            info = self._models[name]
            price, life = info.price_at(day), info.lifecycle_at(day)
            rows.append(
                {
                    "model": name,
                    "status": life.status,
                    "input": price.base.input,
                    "output": price.base.output,
                    "cache_write_5m": price.base.cache_write_5m,
                    "cache_write_1h": price.base.cache_write_1h,
                    "cache_read": price.base.cache_read,
                    "long_prompt_above": price.long_prompt_above,
                    "prices_from": price.valid_from,
                    "deprecated": life.deprecated,
                    "retires": life.retires,
                    "replacement": life.replacement,
                    "source": self.source_url(price.source) or price.source or "",
                }
            )
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"RateCard({len(self._models)} models, batch_discount={self.batch_discount})"


class LifecycleNotices:
    """Says once per model (per session) that a deprecated model retires soon.

    `say` receives one readable line; the notebook session passes its own printer, so the note is a line
    in the cell's output rather than a `UserWarning` pointing at a line inside this package. Without `say`
    the line goes to the `claude_force_nb` logger at WARNING level.
    """

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self._say = say
        self._said: set[str] = set()
        self._lock = threading.Lock()

    def deprecated(self, life: Lifecycle) -> bool:
        """Say `life.message()` if this model has not been mentioned yet; True when it was said now."""
        with self._lock:
            if life.model in self._said:
                return False
            self._said.add(life.model)
        line = f"claude_force_nb: {life.message()}."
        if self._say is not None:
            self._say(line)
        else:
            import logging

            logging.getLogger("claude_force_nb").warning("%s", line)
        return True


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
