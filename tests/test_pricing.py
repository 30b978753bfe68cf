"""The rate card: the shipped figures, cost arithmetic, bands, batch, overrides, and unpriced models."""

from __future__ import annotations

import json
import math
import re
import warnings
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from claude_force_nb import ConfigError, RateCard, UnpricedModelWarning, Usage
from claude_force_nb._pricing import normalize_model_id

# The issue's table (dollars per million tokens): input, 5m write, 1h write, cache read, output, as of
# 2026-10-01 (before the Sonnet 5.5 cache-read cut of 2026-10-07).
ISSUE_TABLE = {
    "claude-opus-4-5": (5, 6.25, 10, 0.50, 25),
    "claude-opus-4-6": (5, 6.25, 10, 0.50, 25),
    "claude-opus-4-7": (5, 6.25, 10, 0.50, 25),
    "claude-opus-4-8": (5, 6.25, 10, 0.50, 25),
    "claude-opus-5": (5, 6.25, 10, 0.50, 25),
    "claude-opus-5-5": (4, 5, 8, 0.20, 20),
    "claude-sonnet-4-5": (3, 3.75, 6, 0.30, 15),
    "claude-sonnet-4-6": (3, 3.75, 6, 0.30, 15),
    "claude-sonnet-5": (2, 2.50, 4, 0.20, 10),
    "claude-sonnet-5-5": (2, 2.50, 4, 0.20, 10),
    "claude-haiku-4-5": (1, 1.25, 2, 0.10, 5),
    "claude-haiku-5-5": (0.10, 0.125, 0.20, 0.01, 0.50),
    "claude-fable-5-1": (10, 12.50, 20, 0.25, 50),
    "claude-fable-5-2": (8, 10, 16, 0.20, 40),
}
OCTOBER_1 = date(2026, 10, 1)


@pytest.mark.parametrize(("model", "rates"), ISSUE_TABLE.items())
def test_shipped_card_matches_the_published_table(model: str, rates: tuple[float, ...]) -> None:
    """Each kind of token is priced at the published rate (one million of each kind, priced separately)."""
    card = RateCard.default()
    million = 1_000_000
    kinds = [
        Usage(input_tokens=million),
        Usage(cache_creation_input_tokens=million),
        Usage(cache_creation_input_tokens=million, cache_creation_1h_input_tokens=million),
        Usage(cache_read_input_tokens=million // 10),
        Usage(output_tokens=million),
    ]
    # cache reads use a tenth of a million so no request crosses a long-prompt band
    expected = [rates[0], rates[1], rates[2], rates[3] / 10, rates[4]]
    if model in ("claude-haiku-5-5",):  # a million-token prompt is in its long band; check at 10K instead
        kinds = [Usage(**{k: v // 100 for k, v in u.to_dict().items()}) for u in kinds]
        expected = [e / 100 for e in expected]
    for usage, dollars in zip(kinds, expected, strict=True):
        if model == "claude-sonnet-4-5" and usage.prompt_tokens > 200_000:
            continue  # covered by the band test
        assert card.cost(model, usage, at=OCTOBER_1) == pytest.approx(dollars)


_SAID = re.compile(r"(input|output|5m cache write|1h cache write|cache read) \$([0-9.]+)")
_LABELS = {
    "input": "input",
    "output": "output",
    "5m cache write": "cache_write_5m",
    "1h cache write": "cache_write_1h",
    "cache read": "cache_read",
}
_OFFICIAL = ("https://platform.claude.com/docs/", "https://docs.anthropic.com/")
_RULE = re.compile(r"([0-9.]+)x input")


def _shipped() -> dict[str, Any]:
    text = resources.files("claude_force_nb").joinpath("data/rate_card.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _pinned(figures: dict[str, Any], where: str) -> None:
    """Every figure a period (or band) gives is quoted by its `says` note or derived by a stated rule."""
    said = {_LABELS[label]: float(value) for label, value in _SAID.findall(figures["says"])}
    derived = {name: float(_RULE.fullmatch(rule)[1]) for name, rule in figures.get("derived", {}).items()}
    given = {name for name in figures if name in _LABELS.values()}
    assert given == set(said) | set(derived), f"{where}: figures without a source note"
    assert not set(said) & set(derived), f"{where}: a figure both quoted and derived"
    for name, value in said.items():
        assert figures[name] == pytest.approx(value), f"{where}.{name} differs from its source note"
    for name, factor in derived.items():
        assert figures[name] == pytest.approx(factor * figures["input"]), f"{where}.{name} breaks its rule"


def test_every_shipped_price_is_pinned_to_its_source_note() -> None:
    """Each price period names a source with a public URL and quotes every figure it sets; third-party
    sources are marked unconfirmed."""
    data = _shipped()
    assert data["format"] == 2
    sources = data["sources"]
    for key, source in sources.items():
        assert source.get("url", "https://").startswith("https://"), key
        official = source.get("publisher") == "Anthropic"
        assert official == source.get("url", "").startswith(_OFFICIAL), key
        assert official or source.get("unconfirmed") is True, f"{key}: third-party but not marked unconfirmed"
    for model, entry in data["models"].items():
        for i, period in enumerate(entry["prices"]):
            where = f"{model}.prices[{i}]"
            assert period["source"] in sources, f"{where}: unknown source {period['source']!r}"
            assert "url" in sources[period["source"]], f"{where}: a price source needs a URL"
            _pinned(period, where)
            if "long_prompt" in period:
                _pinned(period["long_prompt"], f"{where}.long_prompt")
        if "status_source" in entry:
            assert entry["status_source"] in sources, model


def test_prices_follow_the_calls_date() -> None:
    """A call is priced at the period in force on its (UTC) day: Sonnet 5.5 cache reads before and after the
    2026-10-07 cut, given as a date, a datetime or a run record's Unix start time."""
    card = RateCard.default()
    reads = Usage(cache_read_input_tokens=1_000_000)
    info = card.info("claude-sonnet-5-5")
    assert info is not None
    before, after = (p.base.cache_read for p in info.periods)
    assert after < before
    september = datetime(2026, 9, 30, 12, tzinfo=timezone.utc)
    assert card.cost("claude-sonnet-5-5", reads, at=september) == pytest.approx(before)
    assert card.cost("claude-sonnet-5-5", reads, at=september.timestamp()) == pytest.approx(before)
    assert card.cost("claude-sonnet-5-5", reads, at=date(2026, 10, 6)) == pytest.approx(before)
    assert card.cost("claude-sonnet-5-5", reads, at=date(2026, 10, 7)) == pytest.approx(after)
    late_utc = datetime(2026, 10, 6, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # 10-07 01:30 UTC
    assert card.cost("claude-sonnet-5-5", reads, at=late_utc) == pytest.approx(after)
    # Sonnet 5's announced rise from 2026-09-01 was cancelled: one price before and after.
    io = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert card.cost("claude-sonnet-5", io, at=date(2026, 8, 31)) == card.cost(
        "claude-sonnet-5", io, at=date(2026, 9, 2)
    )


def test_lifecycle_follows_the_date() -> None:
    """Sonnet 4.5 is active before 2026-09-30, deprecated until 2026-11-30 and retired from that day, with
    Sonnet 5.5 as its replacement; its dated id and aliases say the same."""
    card = RateCard.default()
    statuses = [
        card.lifecycle("claude-sonnet-4-5", at=day).status  # type: ignore[union-attr]
        for day in (date(2026, 9, 29), date(2026, 9, 30), date(2026, 11, 29), date(2026, 11, 30))
    ]
    assert statuses == ["active", "deprecated", "deprecated", "retired"]
    life = card.lifecycle("claude-sonnet-4-5-20250929", at=date(2026, 12, 1))
    assert life is not None and life.replacement == "claude-sonnet-5-5"
    assert "claude-sonnet-5-5" in life.message() and "retired" in life.message()
    assert card.lifecycle("claude-sonnet-5-5", at=date(2026, 12, 1)).status == "active"  # type: ignore[union-attr]
    assert card.lifecycle("claude-sonnet-5").status == "legacy"  # type: ignore[union-attr]
    assert card.lifecycle("claude-opus-4-9") is None


FORMAT_1_CARD = {
    "format": 1,
    "as_of": "2026-11-26",
    "sources": ["a list of free-text notes, as format 1 had"],
    "batch_discount": 0.5,
    "models": {
        "claude-haiku-4-5": {
            "input": 1.0,
            "cache_write_5m": 1.25,
            "cache_write_1h": 2.0,
            "cache_read": 0.1,
            "output": 5.0,
            "min_cacheable_tokens": 4096,
        },
        "my-model": {
            "input": 1.0,
            "cache_write_5m": 1.0,
            "cache_write_1h": 1.0,
            "cache_read": 1.0,
            "output": 2.0,
            "long_prompt": {
                "above_tokens": 10,
                "input": 9.0,
                "cache_write_5m": 9.0,
                "cache_write_1h": 9.0,
                "cache_read": 9.0,
                "output": 9.0,
            },
        },
    },
}


def test_a_format_1_file_still_loads_as_a_card_and_as_an_override(tmp_path: Path) -> None:
    """A user's format-1 card loads on its own (one period valid at every date) and as an override."""
    file = tmp_path / "old.json"
    file.write_text(json.dumps(FORMAT_1_CARD))
    card = RateCard.from_file(file)
    assert card.models == ("claude-haiku-4-5", "my-model")
    small, large = Usage(input_tokens=10), Usage(input_tokens=11)
    for day in (date(2020, 1, 1), date(2030, 1, 1)):
        assert card.cost("my-model", small, at=day) == pytest.approx(10 / 1e6)
        assert card.cost("my-model", large, at=day) == pytest.approx(11 * 9 / 1e6)
    assert card.lifecycle("my-model").status == "active"  # type: ignore[union-attr]
    merged = RateCard.default().with_overrides(file)
    assert merged.cost("my-model", small) == pytest.approx(10 / 1e6)
    # An override of a dated model replaces its prices at every date, keeping its lifecycle.
    cheap = RateCard.default().with_overrides({"claude-sonnet-5-5": {"cache_read": 0.05}})
    reads = Usage(cache_read_input_tokens=1_000_000)
    assert cheap.cost("claude-sonnet-5-5", reads, at=date(2026, 9, 29)) == pytest.approx(0.05)
    assert cheap.cost("claude-sonnet-5-5", Usage(output_tokens=1_000_000)) == pytest.approx(
        RateCard.default().cost("claude-sonnet-5-5", Usage(output_tokens=1_000_000))
    )
    assert cheap.lifecycle("claude-sonnet-4-5-20250929") == RateCard.default().lifecycle("claude-sonnet-4-5")


def test_a_format_2_override_adds_dated_periods_and_a_lifecycle() -> None:
    """An override in format 2 sets a model's periods, status, retirement date and replacement."""
    card = RateCard.default().with_overrides(
        {
            "claude-house-1": {
                "retires": "2030-01-01",
                "deprecated": "2029-06-01",
                "replacement": "claude-sonnet-5-5",
                "aliases": ["house-latest"],
                "prices": [
                    {
                        "from": "2029-01-01",
                        "input": 1,
                        "cache_write_5m": 1,
                        "cache_write_1h": 1,
                        "cache_read": 1,
                        "output": 1,
                    },
                    {"from": "2029-07-01", "input": 2},
                ],
            }
        }
    )
    one = Usage(input_tokens=1_000_000)
    assert card.cost("house-latest", one, at=date(2029, 6, 30)) == pytest.approx(1.0)
    assert card.cost("claude-house-1", one, at=date(2029, 7, 1)) == pytest.approx(2.0)
    assert card.lifecycle("house-latest", at=date(2029, 6, 1)).status == "deprecated"  # type: ignore[union-attr]
    assert card.lifecycle("house-latest", at=date(2030, 1, 1)).status == "retired"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {
                "status": "sunset",
                "prices": [
                    {"input": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "output": 1}
                ],
            },
            r"status: expected one of",
        ),
        (
            {
                "retires": "30/11/2026",
                "input": 1,
                "cache_write_5m": 1,
                "cache_write_1h": 1,
                "cache_read": 1,
                "output": 1,
            },
            r"retires: expected a date",
        ),
        ({"prices": []}, r"prices: expected a non-empty list"),
        (
            {
                "prices": [
                    {"input": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "output": 1},
                    {"from": "2026-02-01", "input": 2},
                    {"from": "2026-01-01", "input": 3},
                ]
            },
            r"every later period needs a 'from' date, in order",
        ),
    ],
)
def test_bad_format_2_entries_are_refused(entry: object, message: str) -> None:
    """A malformed format-2 entry names the model and the field."""
    with pytest.raises(ConfigError, match=message):
        RateCard.default().with_overrides({"new": entry})


def test_mixed_usage_adds_up() -> None:
    """A response with every kind of token costs the sum of its parts."""
    usage = Usage(
        input_tokens=1000,
        output_tokens=500,
        cache_creation_input_tokens=3000,
        cache_creation_1h_input_tokens=1000,
        cache_read_input_tokens=4000,
    )
    expected = (1000 * 3 + 2000 * 3.75 + 1000 * 6 + 4000 * 0.30 + 500 * 15) / 1e6
    assert RateCard.default().cost("claude-sonnet-4-6", usage) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5@20251001", "claude-haiku-4-5"),
        ("anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5"),
        ("claude-opus-5", "claude-opus-5"),
        ("claude-opus-4-9", "claude-opus-4-9"),
    ],
)
def test_dated_ids_map_to_their_family_only(model: str, family: str) -> None:
    """Date and platform decorations are dropped; nothing else is rewritten."""
    assert normalize_model_id(model) == family


def test_dated_id_costs_like_its_family() -> None:
    """claude-sonnet-4-5-20250929 is priced exactly as claude-sonnet-4-5."""
    card = RateCard.default()
    usage = Usage(input_tokens=1234, output_tokens=567)
    assert card.cost("claude-sonnet-4-5-20250929", usage) == card.cost("claude-sonnet-4-5", usage)
    assert card.cost("claude-haiku-4-5@20251001", usage) == card.cost("claude-haiku-4-5", usage)


def test_unknown_model_is_nan_with_one_warning_per_model() -> None:
    """An unpriced model costs NaN (never 0, never a neighbour's price) and warns once per model."""
    card = RateCard.default().with_overrides({})
    usage = Usage(input_tokens=10, output_tokens=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert math.isnan(card.cost("claude-opus-4-9", usage))
        assert math.isnan(card.cost("claude-opus-4-9", usage))
        assert math.isnan(card.cost("claude-mythos-5", usage))
    messages = [str(w.message) for w in caught if issubclass(w.category, UnpricedModelWarning)]
    assert len(messages) == 2
    assert "claude-opus-4-9" in messages[0]
    assert "did you mean" in messages[0] and "claude-opus-4-8" in messages[0]
    assert "claude-mythos-5" in messages[1]


def test_long_prompt_band_applies_above_threshold() -> None:
    """Haiku 5.5 prompts over 100K tokens (cache reads included) are billed at the long band's rates."""
    card = RateCard.default()
    short = Usage(input_tokens=100_000, output_tokens=1000)
    long = Usage(input_tokens=60_000, cache_read_input_tokens=40_001, output_tokens=1000)
    assert card.cost("claude-haiku-5-5", short) == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    assert card.cost("claude-haiku-5-5", long) == pytest.approx(
        (60_000 * 0.50 + 40_001 * 0.05 + 1000 * 2.50) / 1e6
    )


def test_batch_discount_halves_the_bill() -> None:
    """Batch pricing is 50% of the standard price for input and output."""
    card = RateCard.default()
    usage = Usage(input_tokens=2000, output_tokens=800)
    assert card.cost("claude-opus-5-5", usage, batch=True) == pytest.approx(
        card.cost("claude-opus-5-5", usage) / 2
    )


def test_overrides_from_a_dict_and_a_file(tmp_path: Path) -> None:
    """Users can add a model or change one figure (by dict or by file); other figures are kept."""
    card = RateCard.default().with_overrides(
        {"my-model": {"input": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "output": 2}}
    )
    assert card.cost("my-model", Usage(input_tokens=1_000_000, output_tokens=1_000_000)) == pytest.approx(3.0)
    file = tmp_path / "card.json"
    file.write_text(json.dumps({"models": {"claude-haiku-4-5": {"output": 7.0}}}))
    changed = RateCard.default().with_overrides(file)
    assert changed.cost("claude-haiku-4-5", Usage(output_tokens=1_000_000)) == pytest.approx(7.0)
    assert changed.cost("claude-haiku-4-5", Usage(input_tokens=1_000_000)) == pytest.approx(1.0)
    assert RateCard.default().cost("claude-haiku-4-5", Usage(output_tokens=1_000_000)) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"input": -1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "output": 1},
            r"new\.input",
        ),
        ({"input": 1}, r"new\.cache_write_5m: expected a non-negative number"),
        ("cheap", r"new: expected an object"),
    ],
)
def test_bad_overrides_are_refused(entry: object, message: str) -> None:
    """A malformed override names the model and field."""
    with pytest.raises(ConfigError, match=message):
        RateCard.default().with_overrides({"new": entry})


def test_worst_case_bounds_the_real_cost() -> None:
    """The budget reservation for a call is never below what the call can cost."""
    card = RateCard.default()
    bound = card.worst_case_cost(
        "claude-sonnet-4-6", prompt_tokens=5000, max_tokens=1000, cache_write_ttl="1h"
    )
    worst_real = Usage(
        cache_creation_input_tokens=5000, cache_creation_1h_input_tokens=5000, output_tokens=1000
    )
    assert bound >= card.cost("claude-sonnet-4-6", worst_real)
    assert bound == pytest.approx((5000 * 6 + 1000 * 15) / 1e6)


def test_min_cacheable_tokens_per_model() -> None:
    """Prompt-cache minimums come from the card; unknown models get the common 1024."""
    card = RateCard.default()
    assert card.min_cacheable_tokens("claude-haiku-4-5") == 4096
    assert card.min_cacheable_tokens("claude-sonnet-4-6") == 1024
    assert card.min_cacheable_tokens("not-a-model") == 1024
    assert (
        card.with_min_cacheable_tokens("claude-haiku-4-5", 10).min_cacheable_tokens("claude-haiku-4-5") == 10
    )
