"""`--llmeval-baseline PATH`: compare this run with a saved run (main's report, restored from
a CI cache or artifact) and gate on it (`--gate "gsm8k:regression<=0.02"`).

The saved run is read once at configure time, so a path that is missing or not a run is a
usage error before any model work; the comparison itself is `analyze/saved_baseline.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.analyze.saved_baseline import against_saved, baseline_fields
from pytest_llmeval.cli.runs import RunError, SavedRun, expand, load_run


def add_baseline_option(group: Any) -> None:
    """The option, in the llmeval group."""
    group.addoption(
        "--llmeval-baseline",
        metavar="PATH",
        default=None,
        help="A saved run (folder or report.json) to compare every task x arm with, item by "
        "item; gate on it with e.g. --gate 'gsm8k:regression<=0.02'",
    )


def read_baseline(config: pytest.Config) -> SavedRun | None:
    """The saved run `--llmeval-baseline` names, read now (a usage error naming the fix)."""
    path = config.option.llmeval_baseline
    if not path:
        return None
    try:
        (report,) = expand([path])[:1]
        return load_run(report)
    except RunError as exc:
        raise pytest.UsageError(f"--llmeval-baseline: {exc}") from None


def with_baseline(
    summaries: Mapping[tuple[str, str], Metrics],
    records: Sequence[ItemRecord],
    saved: SavedRun,
) -> dict[tuple[str, str], Metrics]:
    """Each task x arm's metrics with its comparison against `saved` filled in."""
    compared = against_saved(records, saved.records)
    name = str(saved.folder)
    return {
        key: dataclasses.replace(metrics, **baseline_fields(compared.get(key), name))
        for key, metrics in summaries.items()
    }
