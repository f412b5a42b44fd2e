"""The results matrix across saved runs: one row per item, one column group per run (or arm).

A column is one arm of one run: `<run>` when the run has one arm, `<run>/<arm>` when it has
several (models, prompt variants). A run is named by its folder; two runs whose folders have
the same name (`a/out`, `b/out`) are named by as many trailing path parts as tell them apart.
Records are renamed to their column (`arm` and `model`), so that `analyze/compare.py` pairs
and compares columns exactly as it compares the arms of one run. Only items collected from
Tasks are in the matrix (a hand-written test's generations have no item to pair).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_llmeval.analyze.compare import arm_of, arms_in
from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.cli.runs import SavedRun, run_names

MATRIX_FILES = ("matrix.csv", "matrix.parquet")
CELLS = ("extracted", "score", "correct")
"""What each column of the matrix shows per item, as `<column>:<cell>`."""


@dataclass(frozen=True)
class Column:
    """One arm of one saved run, as the matrix and the summary name it."""

    name: str
    """`<run>` or `<run>/<arm>`."""
    run: str
    """The run's name (its folder's name, or more of its path when two runs share one)."""
    arm: str
    """The arm in that run (`arm` of its records; the model for records that predate arms)."""
    folder: str
    """The run's folder, as found on the command line."""


def _arm_order(run: SavedRun) -> list[str]:
    """A run's arms in its report's order (its tasks' arms as collected), then any others."""
    reported = [arm for info in run.report.tasks.values() for arm in info.models]
    return arms_in((r for r in run.records if r.source == "task"), reported)


def columns(runs: Sequence[SavedRun]) -> tuple[list[Column], list[ItemRecord]]:
    """The columns of `runs` in order (runs as given, a run's arms in its order) and every task
    record renamed to its column (`arm` and `model` set to the column's name)."""
    found: list[Column] = []
    renamed: list[ItemRecord] = []
    for run, run_name in zip(runs, run_names(runs), strict=True):
        arms = _arm_order(run)
        by_arm = {
            arm: Column(
                name=run_name if len(arms) == 1 else f"{run_name}/{arm}",
                run=run_name,
                arm=arm,
                folder=str(run.folder),
            )
            for arm in arms
        }
        found += by_arm.values()
        for record in run.records:
            if record.source == "task":
                name = by_arm[arm_of(record)].name
                renamed.append(replace(record, arm=name, model=name))
    return found, renamed


def matrix_rows(names: Sequence[str], records: Sequence[ItemRecord]) -> list[dict[str, Any]]:
    """One row per (task, item id), tasks in the order first seen and ids sorted: the item's
    target, then per column its extracted answer, score and correct (None where the column
    has no record of the item). `records` are renamed to their columns (see `columns`)."""
    table: dict[tuple[str, str], dict[str, ItemRecord]] = {}
    tasks: dict[str, None] = {}
    for record in records:
        tasks.setdefault(record.task)
        table.setdefault((record.task, record.id), {})[arm_of(record)] = record
    rows = []
    for task in tasks:
        for key in sorted(k for k in table if k[0] == task):
            cells = table[key]
            targets = [r.target for r in cells.values() if r.target is not None]
            row: dict[str, Any] = {"task": task, "id": key[1], "target": next(iter(targets), None)}
            for name in names:
                found = cells.get(name)
                for cell in CELLS:
                    row[f"{name}:{cell}"] = None if found is None else getattr(found, cell)
            rows.append(row)
    return rows


def write_matrix(names: Sequence[str], rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """matrix.csv and matrix.parquet in `out` (made if missing); the paths written.

    Scores are floats and `correct` a nullable boolean, so a missing cell is empty in the csv
    and null in the parquet (never 0 or False)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["task", "id", "target"] + [
        f"{name}:{cell}" for name in names for cell in CELLS
    ])  # fmt: skip
    frame["target"] = frame["target"].astype("string")
    for name in names:
        frame[f"{name}:extracted"] = frame[f"{name}:extracted"].astype("string")
        frame[f"{name}:score"] = frame[f"{name}:score"].astype("Float64")
        frame[f"{name}:correct"] = frame[f"{name}:correct"].astype("boolean")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / file for file in MATRIX_FILES]
    frame.to_csv(paths[0], index=False)
    frame.to_parquet(paths[1], index=False)
    return paths
