"""`pytest-llmeval list [DIR...]`: the saved runs found, one line each."""

from __future__ import annotations

import argparse
from typing import Any

from tabulate import tabulate

from pytest_llmeval.cli.runs import SavedRun, load_runs, run_names


def add_parser(subparsers: Any) -> None:
    """`list [DIR ...]` (default `reports/*`)."""
    parser = subparsers.add_parser("list", help="the saved runs found, one line each")
    parser.add_argument(
        "dirs", nargs="*", default=["reports/*"], metavar="DIR",
        help="run folders, report.json paths or globs (default reports/*)",
    )  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    runs = load_runs(args.dirs)
    rows = [row(saved, name) for saved, name in zip(runs, run_names(runs), strict=True)]
    headers = ["run", "started", "models", "tasks", "items", "accuracy", "gates failed", "exit"]
    print(tabulate(rows, headers, "simple", disable_numparse=True))
    return 0


def row(saved: SavedRun, name: str) -> list[object]:
    """One run's line: when, which models and tasks, items, accuracy per task, exit status."""
    report = saved.report
    accuracies = ", ".join(
        f"{task}[{arm}] {result.metrics.accuracy:.3f}"
        for task, info in report.tasks.items()
        for arm, result in info.models.items()
        if result.metrics.accuracy is not None
    )
    return [
        name, report.started[:19], ", ".join(m.name for m in report.settings.models),
        ", ".join(report.tasks), len(saved.records), accuracies or "-",
        report.totals.gates_failed, report.exit_status,
    ]  # fmt: skip
