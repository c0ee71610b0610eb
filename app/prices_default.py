"""The shipped price list: vendors' standard (pay-as-you-go) list prices, USD per 1M tokens.

Data only. `pricing.models` in the configuration adds or replaces entries by name, and
`pricing.defaults: false` drops this list. What it does not model: batch and priority tiers,
prompt-cache writes (Anthropic bills them at 1.25x input; they are counted as input here),
long-context tiers (Gemini 2.5 Pro above 200k prompt tokens, Sonnet's 1M window) and
audio or image tokens. Prompt-cache reads are `cached_input`.

Keys: a family whose names all share one price is a `family*` prefix; where a sibling with
another price shares the prefix (`o3-pro`, `claude-opus-4-5`, `gemini-2.5-flash-lite`), the
family is its exact name plus a `-20*` (or `-0*`) prefix for its dated snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from app.pricing import Price, PriceTable

DEFAULT_PRICES_VERSION = "2026-11"
"""When the list was taken (year-month); the default `pricing.version`."""


def _family(names: tuple[str, ...], price: Price) -> dict[str, Price]:
    return dict.fromkeys(names, price)


_GPT_4O = Price(input=2.50, cached_input=1.25, output=10.00)
_GPT_4O_MINI = Price(input=0.15, cached_input=0.075, output=0.60)
_GPT_41 = Price(input=2.00, cached_input=0.50, output=8.00)
_GPT_41_MINI = Price(input=0.40, cached_input=0.10, output=1.60)
_GPT_41_NANO = Price(input=0.10, cached_input=0.025, output=0.40)
_O3 = Price(input=2.00, cached_input=0.50, output=8.00)
_O4_MINI = Price(input=1.10, cached_input=0.275, output=4.40)
_CLAUDE_OPUS_4 = Price(input=15.00, cached_input=1.50, output=75.00)
_CLAUDE_SONNET_4 = Price(input=3.00, cached_input=0.30, output=15.00)
_CLAUDE_HAIKU_45 = Price(input=1.00, cached_input=0.10, output=5.00)
_CLAUDE_HAIKU_35 = Price(input=0.80, cached_input=0.08, output=4.00)

DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        # OpenAI (platform.openai.com/docs/pricing, Standard tier)
        **_family(("gpt-4o", "gpt-4o-20*"), _GPT_4O),
        "gpt-4o-2024-05-13": Price(input=5.00, output=15.00),  # the first snapshot, no caching
        **_family(("gpt-4o-mini", "gpt-4o-mini-20*"), _GPT_4O_MINI),
        **_family(("gpt-4.1", "gpt-4.1-20*"), _GPT_41),
        **_family(("gpt-4.1-mini", "gpt-4.1-mini-20*"), _GPT_41_MINI),
        **_family(("gpt-4.1-nano", "gpt-4.1-nano-20*"), _GPT_41_NANO),
        **_family(("o3", "o3-20*"), _O3),
        **_family(("o4-mini", "o4-mini-20*"), _O4_MINI),
        "text-embedding-3-small": Price(input=0.02, output=0.0),
        "text-embedding-3-large": Price(input=0.13, output=0.0),
        # Anthropic (docs.claude.com pricing; cached_input = cache hits, 0.1x input)
        **_family(("claude-opus-4", "claude-opus-4-0", "claude-opus-4-20*"), _CLAUDE_OPUS_4),
        "claude-opus-4-1*": _CLAUDE_OPUS_4,  # Opus 4.1 kept Opus 4's price; 4.5 and later did not
        # Every Sonnet 4.x has one price; 4-5 and 4-6 stand apart so each can be repriced alone.
        **_family(
            ("claude-sonnet-4*", "claude-sonnet-4-5*", "claude-sonnet-4-6*"), _CLAUDE_SONNET_4
        ),
        "claude-haiku-4-5*": _CLAUDE_HAIKU_45,
        "claude-3-5-haiku*": _CLAUDE_HAIKU_35,
        # Google Gemini API (ai.google.dev/gemini-api/docs/pricing, paid tier, text input)
        **_family(
            ("gemini-2.0-flash", "gemini-2.0-flash-0*"),
            Price(input=0.10, cached_input=0.025, output=0.40),
        ),
        "gemini-2.5-flash": Price(input=0.30, cached_input=0.03, output=2.50),
        # Prompts up to 200k tokens; longer ones cost 2.50 / 0.25 / 15.00.
        "gemini-2.5-pro*": Price(input=1.25, cached_input=0.125, output=10.00),
    }
)
"""Model or `prefix*` → list price, as of `DEFAULT_PRICES_VERSION`."""


def default_price_table() -> PriceTable:
    """The shipped list alone, as `pricing:` left at its defaults gives it."""
    return PriceTable(DEFAULT_PRICES, version=DEFAULT_PRICES_VERSION)
