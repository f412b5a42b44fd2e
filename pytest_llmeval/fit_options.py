"""`--llmeval-smoke` (run/smoke.py) and `--llmeval-vram-check` (run/vram_fit.py), with their
ini keys: what decides, before the long run, which models run at all."""

from __future__ import annotations

from typing import Any

import pytest

FIT_INI_DEFAULTS: dict[str, object] = {"llmeval_smoke": False, "llmeval_vram_check": "on"}
"""The ini defaults, to tell whether a project configured llmeval (`options.uses_llmeval`)."""


def add_fit_options(parser: pytest.Parser, group: Any) -> None:
    """The two options in the llmeval group, and their ini keys."""
    group.addoption(
        "--llmeval-smoke",
        action="store_true",
        default=None,
        help="Try each model on one item per task first; a model that cannot load, whose "
        "requests all fail or whose output never parses is stopped (its items error at once)",
    )
    group.addoption(
        "--llmeval-vram-check",
        choices=["on", "off"],
        default=None,
        help="Skip a local GPU model whose estimated memory exceeds its GPU's free memory "
        "(default on)",
    )
    parser.addini("llmeval_smoke", "Default --llmeval-smoke", type="bool", default=False)
    parser.addini("llmeval_vram_check", "Default --llmeval-vram-check", default="on")


def read_smoke(config: pytest.Config) -> bool:
    """Whether the smoke run is asked for (command line or ini)."""
    return bool(config.option.llmeval_smoke or config.getini("llmeval_smoke"))


def read_vram_check(config: pytest.Config) -> bool:
    """Whether the VRAM fit check runs (on unless turned off); a bad ini value is refused."""
    mode = config.option.llmeval_vram_check or str(config.getini("llmeval_vram_check")).strip()
    if mode not in ("on", "off", ""):
        raise pytest.UsageError(f"ini llmeval_vram_check must be on or off, got {mode!r}")
    return mode != "off"
