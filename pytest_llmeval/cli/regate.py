"""`pytest-llmeval regate RUN --gate ...`: check gates again on a saved run, no model needed.

The run's own gates (the tasks' declared gates and the command-line and ini gates it ran
with) apply, then the `--gate` options given here, which override them metric by metric as
a command line does. The exit status is the pytest run's rule: 1 when a gate fails or an
item errored, else 0.
"""

from __future__ import annotations

import argparse
from typing import Any

from pytest_llmeval.analyze.compare_gates import check_comparisons
from pytest_llmeval.analyze.gates import Gate, GateError, GateResult, check_run, parse_gate
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.cli.runs import RunError, SavedRun, load_runs


def add_parser(subparsers: Any) -> None:
    """`regate RUN [--gate G ...]`."""
    parser = subparsers.add_parser(
        "regate", help="check gates again on a saved run; exit status as the run's rule"
    )
    parser.add_argument("run_dir", metavar="RUN", help="a run folder or its report.json")
    parser.add_argument(
        "--gate", action="append", default=[], metavar="GATE",
        help="'[task:]metric op value' (or 'metric(arm) op value'); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--only", action="store_true",
        help="check only the --gate options, not the run's own gates",
    )  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    (saved,) = load_runs([args.run_dir])
    try:
        given = [parse_gate(text, "cli") for text in args.gate]
    except GateError as exc:
        raise RunError(str(exc)) from None
    results = regate(saved, given, only=args.only)
    for result in results:
        print(f"{result.name}: {result.describe()}")
    errors = sum(1 for r in saved.records if r.outcome == "error")
    failed = sum(1 for r in results if r.passed is False)
    print(f"{len(results)} gates, {failed} failed; {errors} items errored in the run")
    return 1 if failed or errors else 0


def regate(saved: SavedRun, given: list[Gate], only: bool = False) -> list[GateResult]:
    """The gates of `saved` checked on its saved metrics and comparisons."""
    report = saved.report
    summaries: dict[tuple[str, str], Metrics] = {
        (task, arm): result.metrics
        for task, info in report.tasks.items()
        for arm, result in info.models.items()
    }
    declared = {
        task: [] if only or info.declaration is None else list(info.declaration.gates)
        for task, info in report.tasks.items()
    }
    kept = [] if only else [parse_gate(text, "ini") for text in report.settings.gates]
    overrides = [*kept, *given]
    no_data = {t: i.no_data for t, i in report.tasks.items() if i.no_data is not None}
    results = check_run(summaries, declared, overrides, no_data)
    arms = {task: list(info.models) for task, info in report.tasks.items() if info.models}
    baselines = {c.task: c.baseline for c in report.comparisons}
    partial = {task: m.partial for (task, _), m in summaries.items()}
    results += check_comparisons(report.comparisons, arms, baselines, declared, overrides, partial)
    return results
