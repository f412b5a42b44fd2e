"""The command line's sampling overrides: `--llmeval-samples N`, `--llmeval-temperature T`,
`--llmeval-top-p P`, applied to every collected task's `Generation` (run/collect.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmeval.declare.settings import SamplingOverride


def add_sampling_options(group: Any) -> None:
    """The three options, in the llmeval group."""
    group.addoption(
        "--llmeval-samples",
        type=int,
        metavar="N",
        default=None,
        help="Draw N candidates per item (needs sampling: a task temperature > 0 or "
        "--llmeval-temperature); reports mean@N, maj@N, pass@k and oracle@N",
    )
    group.addoption(
        "--llmeval-temperature",
        type=float,
        metavar="T",
        default=None,
        help="Sampling temperature for every task (0: greedy), overriding the tasks' own",
    )
    group.addoption(
        "--llmeval-top-p",
        type=float,
        metavar="P",
        default=None,
        help="Nucleus sampling mass in (0, 1] for every task, overriding the tasks' own",
    )


def read_sampling(config: pytest.Config) -> SamplingOverride:
    """The overrides given (None where not), refused with the fix when out of range."""
    samples = config.option.llmeval_samples
    temperature = config.option.llmeval_temperature
    top_p = config.option.llmeval_top_p
    if samples is not None and samples < 1:
        raise pytest.UsageError(f"--llmeval-samples must be >= 1, got {samples}")
    if temperature is not None and not temperature >= 0:
        raise pytest.UsageError(
            f"--llmeval-temperature must be >= 0 (0: greedy), got {temperature}"
        )
    if top_p is not None and not 0 < top_p <= 1:
        raise pytest.UsageError(f"--llmeval-top-p must be in (0, 1], got {top_p}")
    return SamplingOverride(samples, temperature, top_p)
