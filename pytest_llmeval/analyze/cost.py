"""Estimated cost of API models from a price table the user can extend.

Prices are USD per million input and output tokens. The built-in table holds a few list
prices (as published by their providers in 2025; check before relying on them); add or
override entries in pyproject.toml::

    [tool.llmeval.prices."gpt-4o-mini"]
    input = 0.15
    output = 0.60

Local models have no price: their cost is their energy, reported separately.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


@dataclass(frozen=True)
class Price:
    """A model's list price in USD per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """USD for this many input and output tokens."""
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1e6


def load_prices(rootdir: Path) -> dict[str, Price]:
    """The built-in table updated with `[tool.llmeval.prices]` from rootdir/pyproject.toml."""
    prices = {name: Price(*pair) for name, pair in BUILTIN_PRICES.items()}
    pyproject = rootdir / "pyproject.toml"
    if pyproject.is_file():
        with pyproject.open("rb") as handle:
            table = tomllib.load(handle).get("tool", {}).get("llmeval", {}).get("prices", {})
        for name, entry in table.items():
            if not isinstance(entry, dict) or not {"input", "output"} <= set(entry):
                raise ValueError(
                    f"{pyproject}: [tool.llmeval.prices.{name!r}] needs input = <USD per "
                    "million input tokens> and output = <USD per million output tokens>"
                )
            prices[name] = Price(float(entry["input"]), float(entry["output"]))
    return prices


NO_TOKEN_COUNTS = "token counts unknown: the backend does not count tokens"


def estimate_cost(
    backend: str,
    model_id: str,
    tokens_in: int | None,
    tokens_out: int | None,
    prices: Mapping[str, Price],
) -> dict[str, Any]:
    """`{"cost_usd", "cost_reason"}` for one task x model (token counts None: the backend
    counts none, so a priced model's cost is unknown)."""
    if backend == "callable":
        # Its energy is not metered either (a remote backend): nothing here knows its cost.
        return {
            "cost_usd": None,
            "cost_reason": "callable pipeline: its cost is not known to the harness",
        }
    if backend != "openai":
        return {"cost_usd": None, "cost_reason": "local model: see energy"}
    model = model_id.rsplit("@", 1)[0]
    if model not in prices:
        return {
            "cost_usd": None,
            "cost_reason": f"no price for {model!r}: add [tool.llmeval.prices.{model!r}]",
        }
    if tokens_in is None or tokens_out is None:
        return {"cost_usd": None, "cost_reason": NO_TOKEN_COUNTS}
    return {"cost_usd": round(prices[model].cost(tokens_in, tokens_out), 6), "cost_reason": None}
