"""app/pricing.py and app/prices_default.py: lookup, integer nano-USD costs, the shipped list."""

import math

import msgspec
import pytest

from app.prices_default import DEFAULT_PRICES, DEFAULT_PRICES_VERSION, default_price_table
from app.pricing import Price, PriceTable, check_model_pattern

GPT_4O = Price(input=2.50, cached_input=1.25, output=10.00)
MINI = Price(input=0.15, cached_input=0.075, output=0.60)
TABLE = PriceTable(
    {
        "gpt-4o": GPT_4O,
        "gpt-4o*": Price(input=5.0, output=15.0),
        "gpt-4o-mini*": MINI,
        "gpt-4o-mini-2024*": Price(input=1.0, output=1.0),
        "claude-haiku-4-5": Price(input=1.0, cached_input=0.10, output=5.0),
    },
    version="test-1",
)


# Price


def test_cached_input_defaults_to_input() -> None:
    price = Price(input=3.0, output=15.0)
    assert price.cached_input == 3.0
    assert price == Price(input=3.0, output=15.0, cached_input=3.0)


def test_a_price_decodes_with_its_default_and_forbids_unknown_fields() -> None:
    assert msgspec.convert({"input": 1, "output": 2}, Price) == Price(input=1, output=2)
    with pytest.raises(msgspec.ValidationError, match="unknown field `cached`"):
        msgspec.convert({"input": 1, "output": 2, "cached": 1}, Price)
    with pytest.raises(msgspec.ValidationError, match=">= 0"):
        msgspec.convert({"input": -1, "output": 2}, Price)


@pytest.mark.parametrize(
    "fields",
    [
        {"input": -1.0, "output": 1.0},
        {"input": 1.0, "output": -0.5},
        {"input": 1.0, "output": 1.0, "cached_input": -1.0},
        {"input": math.inf, "output": 1.0},
    ],
)
def test_a_price_is_finite_and_not_negative(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        Price(**fields)


# Lookup


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", GPT_4O),  # exact beats the `gpt-4o*` prefix it also matches
        ("gpt-4o-2024-08-06", Price(input=5.0, output=15.0)),
        ("gpt-4o-mini", MINI),  # a prefix matches its own stem
        ("gpt-4o-mini-tts", MINI),
        ("gpt-4o-mini-2024-07-18", Price(input=1.0, output=1.0)),  # the longest prefix wins
        ("claude-haiku-4-5", Price(input=1.0, cached_input=0.10, output=5.0)),
        ("claude-haiku-4-5-20251001", None),  # an exact entry is not a prefix
        ("gpt-4", None),
        ("", None),
        ("GPT-4O", None),  # names are case-sensitive, as upstreams are
    ],
)
def test_lookup_exact_then_longest_prefix(model: str, expected: Price | None) -> None:
    assert TABLE.lookup(model) == expected


def test_a_bare_star_prices_every_other_model() -> None:
    table = PriceTable({"*": Price(input=1.0, output=2.0), "a": Price(input=9.0, output=9.0)})
    assert table.lookup("anything") == Price(input=1.0, output=2.0)
    assert table.lookup("a") == Price(input=9.0, output=9.0)


def test_the_table_keeps_its_version_and_entries() -> None:
    assert TABLE.version == "test-1"
    assert TABLE.prices["gpt-4o-mini*"] == MINI
    assert PriceTable({}).version == ""


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "must not be empty"),
        ("g*pt", "'*' may only end a model name (a prefix such as 'gpt-4o-mini*')"),
        ("**", "'*' may only end a model name (a prefix such as 'gpt-4o-mini*')"),
        ("gpt-4o", None),
        ("gpt-4o*", None),
        ("*", None),
    ],
)
def test_model_patterns(pattern: str, reason: str | None) -> None:
    assert check_model_pattern(pattern) == reason


def test_a_bad_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="'g\\*pt': '\\*' may only end"):
        PriceTable({"g*pt": GPT_4O})


# Cost


@pytest.mark.parametrize(
    ("model", "prompt", "completion", "cached", "nano"),
    [
        # 1000 x $2.50/M + 1000 x $10/M = $0.0125
        ("gpt-4o", 1000, 1000, 0, 12_500_000),
        # 600 x $2.50/M + 400 x $1.25/M = $0.002
        ("gpt-4o", 1000, 0, 400, 2_000_000),
        # every prompt token cached: 1000 x $0.075/M = $0.000075
        ("gpt-4o-mini", 1000, 0, 1000, 75_000),
        # cached tokens beyond the prompt count as the prompt, no more
        ("gpt-4o-mini", 1000, 0, 5000, 75_000),
        # one token at $0.15/M = 150 nano-USD
        ("gpt-4o-mini", 1, 0, 0, 150),
        ("gpt-4o-mini", 0, 1, 0, 600),
        ("gpt-4o", 0, 0, 0, 0),
        ("unknown-model", 1_000_000, 1_000_000, 0, 0),
        ("gpt-4o", -5, -5, -5, 0),
    ],
)
def test_cost_in_nano_usd(model: str, prompt: int, completion: int, cached: int, nano: int) -> None:
    assert TABLE.cost_nano(model, prompt, completion, cached) == nano


@pytest.mark.parametrize(
    ("tokens", "nano"),
    [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)],  # 0.5 nano-USD a token, rounded half up once
)
def test_cost_rounds_half_up_once_per_request(tokens: int, nano: int) -> None:
    table = PriceTable({"m": Price(input=0.0005, output=0.0)})
    assert table.cost_nano("m", tokens, 0) == nano


def test_below_half_a_nano_rounds_down() -> None:
    table = PriceTable({"m": Price(input=0.0004, output=0.0)})
    assert table.cost_nano("m", 1, 0) == 0
    assert table.cost_nano("m", 10, 0) == 4


@pytest.mark.parametrize(
    ("price", "prompt", "completion", "cached", "nano"),
    [
        # In floats, 7,000,001 x 0.075 / 1e6 x 1e9 is 525000074.9999999
        (MINI, 7_000_001, 0, 7_000_001, 525_000_075),
        (MINI, 12_345_678, 0, 0, 1_851_851_700),
        (Price(input=0.3, output=2.5), 7_000_001, 10_000_000, 0, 27_100_000_300),
        # Exactly half a nano-USD: float arithmetic lands either side of it
        (Price(input=0.0375, output=0.0), 101, 0, 0, 3788),
        (Price(input=0.0375, output=0.0), 7_000_001, 0, 0, 262_500_038),
        (MINI, 10_000_000, 0, 10_000_000, 750_000_000),
        (
            Price(input=1.1, output=4.4, cached_input=0.275),
            10**12,
            10**12,
            10**11,
            5_417_500 * 10**9,
        ),
    ],
)
def test_no_float_drift_for_large_counts(
    price: Price, prompt: int, completion: int, cached: int, nano: int
) -> None:
    cost = PriceTable({"m": price}).cost_nano("m", prompt, completion, cached)
    assert cost == nano
    assert type(cost) is int


# The shipped list


def test_the_shipped_table() -> None:
    table = default_price_table()
    assert table.version == DEFAULT_PRICES_VERSION == "2026-11"
    assert table.prices == DEFAULT_PRICES
    with pytest.raises(TypeError):
        DEFAULT_PRICES["x"] = GPT_4O  # type: ignore[index]


@pytest.mark.parametrize(
    ("model", "input_", "cached", "output"),
    [
        ("gpt-4o", 2.50, 1.25, 10.00),
        ("gpt-4o-mini", 0.15, 0.075, 0.60),
        ("gpt-4.1", 2.00, 0.50, 8.00),
        ("gpt-4.1-mini", 0.40, 0.10, 1.60),
        ("gpt-4.1-nano", 0.10, 0.025, 0.40),
        ("o3", 2.00, 0.50, 8.00),
        ("o4-mini", 1.10, 0.275, 4.40),
        ("text-embedding-3-small", 0.02, 0.02, 0.0),
        ("text-embedding-3-large", 0.13, 0.13, 0.0),
        ("claude-opus-4", 15.00, 1.50, 75.00),
        ("claude-sonnet-4", 3.00, 0.30, 15.00),
        ("claude-sonnet-4-5", 3.00, 0.30, 15.00),
        ("claude-sonnet-4-6", 3.00, 0.30, 15.00),
        ("claude-haiku-4-5", 1.00, 0.10, 5.00),
        ("claude-3-5-haiku", 0.80, 0.08, 4.00),
        ("gemini-2.0-flash", 0.10, 0.025, 0.40),
        ("gemini-2.5-flash", 0.30, 0.03, 2.50),
        ("gemini-2.5-pro", 1.25, 0.125, 10.00),
    ],
)
def test_every_listed_model_has_its_list_price(
    model: str, input_: float, cached: float, output: float
) -> None:
    assert default_price_table().lookup(model) == Price(
        input=input_, cached_input=cached, output=output
    )


@pytest.mark.parametrize(
    ("snapshot", "family"),
    [
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("o3-2025-04-16", "o3"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
    ],
)
def test_dated_snapshots_take_their_family_price(snapshot: str, family: str) -> None:
    table = default_price_table()
    assert table.lookup(snapshot) == table.lookup(family) is not None


@pytest.mark.parametrize(
    "sibling",
    ["o3-pro", "o3-mini", "o4-mini-deep-research", "claude-opus-4-5", "gemini-2.5-flash-lite"],
)
def test_siblings_with_other_prices_are_not_caught_by_a_family(sibling: str) -> None:
    assert default_price_table().lookup(sibling) is None


def test_the_first_gpt_4o_snapshot_keeps_its_own_price() -> None:
    assert default_price_table().lookup("gpt-4o-2024-05-13") == Price(input=5.0, output=15.0)
