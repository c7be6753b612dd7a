"""Model prices and the cost of one call, in USD.

The built-in table holds public list prices (USD per million tokens) of common OpenAI, Qwen (DashScope /
Bailian, international list), Anthropic and DeepSeek models. Prices change: override or extend them in
``llmobs.toml`` (``[prices."model"]``) or with a plugin implementing ``llmobs_model_price``; the built-in
table is itself registered as the lowest-priority plugin of that hook.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens. Cache prices default to the input price when unknown."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> tuple[float, float]:
        """(input cost, output cost) in USD. ``input_tokens`` includes cached tokens, as in GenAI usage."""
        uncached = max(input_tokens - cache_read_tokens - cache_write_tokens, 0)
        read_price = self.input if self.cache_read is None else self.cache_read
        write_price = self.input if self.cache_write is None else self.cache_write
        input_cost = uncached * self.input + cache_read_tokens * read_price + cache_write_tokens * write_price
        return input_cost / 1e6, output_tokens * self.output / 1e6


def _p(inp: float, out: float, cache_read: float | None = None, cache_write: float | None = None) -> ModelPrice:
    return ModelPrice(inp, out, cache_read, cache_write)


#: List prices, USD per million tokens (input, output, cache read, cache write).
BUILTIN_PRICES: dict[str, ModelPrice] = {
    # OpenAI
    "gpt-5": _p(1.25, 10.0, 0.125),
    "gpt-5-mini": _p(0.25, 2.0, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-4.1": _p(2.0, 8.0, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "gpt-4o": _p(2.50, 10.0, 1.25),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "gpt-4-turbo": _p(10.0, 30.0),
    "gpt-3.5-turbo": _p(0.50, 1.50),
    "o1": _p(15.0, 60.0, 7.50),
    "o1-mini": _p(1.10, 4.40, 0.55),
    "o3": _p(2.0, 8.0, 0.50),
    "o3-mini": _p(1.10, 4.40, 0.55),
    "o4-mini": _p(1.10, 4.40, 0.275),
    "text-embedding-3-small": _p(0.02, 0.0),
    "text-embedding-3-large": _p(0.13, 0.0),
    "text-embedding-ada-002": _p(0.10, 0.0),
    # Qwen (DashScope / Model Studio, international list prices)
    "qwen-max": _p(1.60, 6.40),
    "qwen-plus": _p(0.40, 1.20),
    "qwen-turbo": _p(0.05, 0.20),
    "qwen-long": _p(0.072, 0.287),
    "qwen3-max": _p(1.20, 6.0),
    "qwen3-coder-plus": _p(1.0, 5.0),
    "qwen3-235b-a22b": _p(0.70, 2.80),
    "qwen3-32b": _p(0.70, 2.80),
    "qwen3-8b": _p(0.18, 0.70),
    "qwq-plus": _p(0.80, 2.40),
    "text-embedding-v3": _p(0.07, 0.0),
    # Anthropic
    "claude-opus-4": _p(15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-4": _p(3.0, 15.0, 0.30, 3.75),
    "claude-3-7-sonnet": _p(3.0, 15.0, 0.30, 3.75),
    "claude-3-5-sonnet": _p(3.0, 15.0, 0.30, 3.75),
    "claude-3-5-haiku": _p(0.80, 4.0, 0.08, 1.0),
    "claude-haiku-4-5": _p(1.0, 5.0, 0.10, 1.25),
    "claude-3-opus": _p(15.0, 75.0, 1.50, 18.75),
    "claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30),
    # DeepSeek
    "deepseek-chat": _p(0.27, 1.10, 0.07),
    "deepseek-reasoner": _p(0.55, 2.19, 0.14),
}

# Dated snapshots ("gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "claude-sonnet-4-5@20250929") and
# "latest" aliases resolve to their family; a provider prefix ("openai/gpt-4o", "models/...") is dropped.
_SUFFIX = re.compile(r"([-@](\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|preview))+$")


def find_price(model: str, prices: Mapping[str, ModelPrice] = BUILTIN_PRICES) -> ModelPrice | None:
    """The price of ``model`` in ``prices``: exact name, undated name, then the longest family prefix."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    for candidate in (name, _SUFFIX.sub("", name)):
        if candidate in prices:
            return prices[candidate]
    best = max((k for k in prices if name.startswith((k + "-", k + "."))), key=len, default=None)
    return prices[best] if best else None
