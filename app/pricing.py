"""Model prices and the cost of a request in integer nano-USD. Pure: stdlib and msgspec only.

Costs are integers so that spend counters in Redis and SQLite add up exactly: a price in USD
per million tokens is held as pico-USD per token (1e-12 USD, exact for prices with up to six
decimals), and a request's total is rounded once, half up, to nano-USD (1e-9 USD).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

import msgspec

USDPerMillion = Annotated[float, msgspec.Meta(ge=0)]
"""A price in USD per million tokens."""

_PICO_PER_NANO = 1000
NANO_PER_USD = 1_000_000_000
_PICO_PER_USD_PER_MILLION = Decimal(1_000_000)
"""$1 per million tokens is 1e-6 USD a token, which is 1e6 pico-USD."""


class Price(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one model costs, in USD per million tokens."""

    input: USDPerMillion
    """Prompt tokens not served from the provider's prompt cache."""
    output: USDPerMillion
    """Completion tokens, reasoning tokens included (providers bill them as output)."""
    cached_input: USDPerMillion = math.nan
    """Prompt tokens read from the provider's prompt cache; omitted = `input`."""

    def __post_init__(self) -> None:
        if math.isnan(self.cached_input):  # NaN never gets past `ge=0`: it can only mean "omitted"
            msgspec.structs.force_setattr(self, "cached_input", self.input)
        if not all(
            math.isfinite(p) and p >= 0 for p in (self.input, self.output, self.cached_input)
        ):
            raise ValueError("prices must be finite and >= 0")


class _Rates(msgspec.Struct, frozen=True):
    """A `Price` in pico-USD per token, so that costs are exact integer arithmetic."""

    input: int
    cached_input: int
    output: int


def _pico_per_token(usd_per_million: float) -> int:
    # repr() is the shortest text that reads back as the same float: 0.075 stays 0.075.
    exact = Decimal(repr(usd_per_million)) * _PICO_PER_USD_PER_MILLION
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def _rates(price: Price) -> _Rates:
    return _Rates(
        _pico_per_token(price.input),
        _pico_per_token(price.cached_input),
        _pico_per_token(price.output),
    )


def check_model_pattern(pattern: str) -> str | None:
    """Why `pattern` cannot name prices (None when it can): a model, or a `prefix*`."""
    if not pattern:
        return "must not be empty"
    if "*" in pattern[:-1]:
        return "'*' may only end a model name (a prefix such as 'gpt-4o-mini*')"
    return None


class PriceTable:
    """Prices by model: the exact name first, then the longest configured `prefix*`.

    A bare `*` is the empty prefix: it prices every model nothing else matches. A model that
    matches nothing costs 0. Build one per process; lookups never allocate.
    """

    def __init__(self, prices: Mapping[str, Price], *, version: str = "") -> None:
        """Index `prices` (model or `prefix*` → price).

        Raises:
            ValueError: a key with a `*` anywhere but at its end, or an empty key.
        """
        for pattern in prices:
            if (reason := check_model_pattern(pattern)) is not None:
                raise ValueError(f"{pattern!r}: {reason}")
        self._version = version
        self._prices = dict(prices)
        self._exact = {m: (p, _rates(p)) for m, p in prices.items() if not m.endswith("*")}
        # Longest first, so the first match is the most specific; a linear scan of the ~20
        # prefixes costs about a microsecond, less than a cache of every model name seen.
        self._prefixes = sorted(
            ((m[:-1], p, _rates(p)) for m, p in prices.items() if m.endswith("*")),
            key=lambda entry: len(entry[0]),
            reverse=True,
        )

    @property
    def version(self) -> str:
        """Which price list this is (`pricing.version`), recorded with the spend it priced."""
        return self._version

    @property
    def prices(self) -> Mapping[str, Price]:
        """Every entry, as configured (model or `prefix*` → price)."""
        return self._prices

    def _find(self, model: str) -> tuple[Price, _Rates] | None:
        found = self._exact.get(model)
        if found is not None:
            return found
        for prefix, price, rates in self._prefixes:
            if model.startswith(prefix):
                return price, rates
        return None

    def lookup(self, model: str) -> Price | None:
        """The price of `model`, or None when no entry matches it."""
        found = self._find(model)
        return None if found is None else found[0]

    def cost_nano(
        self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> int:
        """What a request cost, in nano-USD (1e-9 USD), rounded half up; 0 for an unknown model.

        Args:
            model: The model that served the request, as the upstream reported it.
            prompt_tokens: Every prompt token, those read from the prompt cache included (as
                OpenAI and Gemini count them).
            completion_tokens: Output tokens, reasoning included.
            cached_tokens: How many of `prompt_tokens` were read from the prompt cache; capped
                at `prompt_tokens`. Negative counts are taken as 0.
        """
        found = self._find(model)
        if found is None:
            return 0
        rates = found[1]
        prompt = max(prompt_tokens, 0)
        cached = min(max(cached_tokens, 0), prompt)
        pico = (
            (prompt - cached) * rates.input
            + cached * rates.cached_input
            + max(completion_tokens, 0) * rates.output
        )
        return (pico + _PICO_PER_NANO // 2) // _PICO_PER_NANO
