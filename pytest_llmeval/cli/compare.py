"""`pytest-llmeval compare RUN...`: saved runs side by side, item by item, no model needed.

Writes the results matrix (`matrix.py`: item x run, extracted answer, score, correct) to
`--out`, and prints a summary per task: each column's accuracy with its Wilson interval over
the items it ran, and each column against the baseline (the first column, or `--baseline`)
on the items both ran: the paired delta with Newcombe's interval, the exact McNemar p-value
(Holm-adjusted beside it when several columns are compared), and the items whose verdict
flipped. These are `analyze/compare.py`'s statistics, the ones a run shows for its own arms.
Items only one side ran are counted in each comparison, never paired.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pytest_llmeval.analyze.compare import ArmComparison, Compared, compare_run, is_right
from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.analyze.stats import wilson_interval
from pytest_llmeval.cli.matrix import Column, columns, matrix_rows, write_matrix
from pytest_llmeval.cli.runs import RunError, SavedRun, expand, load_run, load_runs


def add_parser(subparsers: Any) -> None:
    """`compare RUN... [--baseline RUN] [--out DIR] [--format md|json|csv]`."""
    parser = subparsers.add_parser(
        "compare", help="saved runs side by side: results matrix, accuracies, paired deltas"
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="run folders, report.json paths or globs"
    )
    parser.add_argument(
        "--baseline", metavar="RUN",
        help="what every other column is compared with: a run (its first arm), a column "
        "(`run/arm`) or a run folder (added when not among RUN); default the first column",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=".", metavar="DIR",
        help="Folder for matrix.csv and matrix.parquet (default: the current folder)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("md", "json", "csv"), default="md",
        help="What goes to stdout: markdown tables, the comparisons as JSON, or the per-task "
        "summary rows as CSV (default md)",
    )  # fmt: skip
    parser.set_defaults(run=_run)


@dataclass
class Accuracy:
    """One column's accuracy on one task, over every item it ran (errors count as wrong)."""

    task: str
    column: str
    items: int
    correct: int
    errors: int
    accuracy: float | None
    ci95: list[float] | None


@dataclass
class Comparison:
    """Everything `compare` says about the runs: columns, accuracies, paired comparisons."""

    columns: list[Column]
    baseline: str
    accuracies: list[Accuracy]
    comparisons: list[ArmComparison]
    answers_differ: dict[tuple[str, str], list[str]]
    """(task, column) -> items where the column's extracted answer is not the baseline's."""
    no_baseline: list[str]
    """Tasks the baseline has no items of (their columns are not compared)."""


def _run(args: argparse.Namespace) -> int:
    runs = load_runs(args.runs)
    runs, baseline = _with_baseline(runs, args.baseline)
    result = compare(runs, baseline)
    names = [c.name for c in result.columns]
    _, records = columns(runs)
    written = write_matrix(names, matrix_rows(names, records), Path(args.out))
    note = f"matrix: {written[0]}, {written[1]}"
    if args.format == "json":
        print(json.dumps(as_json(result, written), indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        rows = summary_rows(result)
        writer.writerow(rows[0].keys() if rows else ["task", "column"])
        writer.writerows(row.values() for row in rows)
    else:
        print(markdown(result))
        print(note)
    if args.format != "md":
        print(note, file=sys.stderr)
    return 0


def _with_baseline(runs: list[SavedRun], text: str | None) -> tuple[list[SavedRun], str | None]:
    """The runs (a baseline folder not among them first) and the baseline's column name."""
    if text is None:
        return runs, None
    cols, _ = columns(runs)
    for column in cols:
        if text == column.name:
            return runs, column.name
    for column in cols:
        if text == column.run:
            return runs, column.name
    if not Path(text).exists():
        known = ", ".join(c.name for c in cols)
        raise RunError(f"--baseline {text}: no such run or column (columns: {known})")
    (report,) = expand([text])
    for column in cols:
        if Path(column.folder).resolve() == report.parent.resolve():
            return runs, column.name
    # A baseline folder not among the runs compared (main's run in CI): compared with all.
    runs = [load_run(report), *runs]
    return runs, columns(runs)[0][0].name


def compare(runs: list[SavedRun], baseline: str | None = None) -> Comparison:
    """The summary of `runs` against `baseline` (a column name; None: the first column)."""
    cols, records = columns(runs)
    if not cols:
        raise RunError(f"{runs[0].folder}: no task items to compare (only hand-written tests?)")
    names = [c.name for c in cols]
    baseline = baseline or names[0]
    compared = compare_run(records, baseline, names)
    return Comparison(
        columns=cols,
        baseline=baseline,
        accuracies=_accuracies(records, names),
        comparisons=compared.comparisons,
        answers_differ=_answers_differ(compared),
        no_baseline=[t for t, arms in compared.arms.items() if baseline not in arms],
    )


def _accuracies(records: list[ItemRecord], names: list[str]) -> list[Accuracy]:
    by_key: dict[tuple[str, str], list[ItemRecord]] = {}
    for record in records:
        by_key.setdefault((record.task, record.arm or record.model), []).append(record)
    tasks = list(dict.fromkeys(r.task for r in records))
    found = []
    for task in tasks:
        for name in names:
            ran = by_key.get((task, name))
            if not ran:
                continue
            right = sum(1 for r in ran if is_right(r))
            found.append(
                Accuracy(
                    task=task,
                    column=name,
                    items=len(ran),
                    correct=right,
                    errors=sum(1 for r in ran if r.outcome == "error"),
                    accuracy=right / len(ran),
                    ci95=list(wilson_interval(right, len(ran))),
                )
            )
    return found


def _answers_differ(compared: Compared) -> dict[tuple[str, str], list[str]]:
    return {
        key: [b.id for b, c in pairs if b.extracted != c.extracted]
        for key, pairs in compared.pairs.items()
    }


def summary_rows(result: Comparison) -> list[dict[str, Any]]:
    """One row per (task, column): its accuracy, and against the baseline (empty for the
    baseline itself) the paired figures; what `--format csv` prints."""
    against = {(c.task, c.candidate): c for c in result.comparisons}
    rows = []
    for acc in result.accuracies:
        c = against.get((acc.task, acc.column))
        low, high = acc.ci95 or (None, None)
        d_low, d_high = (c.delta_ci95 if c and c.delta_ci95 else None) or (None, None)
        rows.append({
            "task": acc.task, "column": acc.column, "items": acc.items, "correct": acc.correct,
            "errors": acc.errors, "accuracy": acc.accuracy, "accuracy_low": low,
            "accuracy_high": high, "baseline": c.baseline if c else None,
            "paired": c.n if c else None, "baseline_only": c.baseline_only if c else None,
            "column_only": c.candidate_only if c else None, "delta": c.delta if c else None,
            "delta_low": d_low, "delta_high": d_high,
            "p_value_mcnemar": c.p_value_mcnemar if c else None,
            "p_value_holm": c.p_value if c else None, "wins": c.wins if c else None,
            "losses": c.losses if c else None,
        })  # fmt: skip
    return rows


def as_json(result: Comparison, written: list[Path]) -> dict[str, Any]:
    """What `--format json` prints: the columns, the accuracies, the comparisons as dicts
    (`analyze/compare.py`'s `ArmComparison` fields, plus `answers_differ`), the matrix files."""
    comparisons = []
    for c in result.comparisons:
        entry = asdict(c)
        entry["answers_differ"] = result.answers_differ.get((c.task, c.candidate), [])
        comparisons.append(entry)
    return {
        "baseline": result.baseline,
        "columns": [asdict(c) for c in result.columns],
        "accuracy": [asdict(a) for a in result.accuracies],
        "comparisons": comparisons,
        "no_baseline": result.no_baseline,
        "matrix": [str(p) for p in written],
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(bounds: list[float] | None) -> str:
    return "-" if not bounds else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _ids(ids: list[str], shown: int = 10) -> str:
    more = f" (+{len(ids) - shown} more in --format json)" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more if ids else "none"


def markdown(result: Comparison) -> str:
    """The summary as markdown: per task, the accuracies, the comparisons with the baseline,
    the unpaired counts and the items where verdicts flipped."""
    lines: list[str] = []
    for task in dict.fromkeys(a.task for a in result.accuracies):
        lines += [f"## {task}", ""]
        accuracy = [
            [a.column, a.items, a.errors, _num(a.accuracy), _interval(a.ci95)]
            for a in result.accuracies
            if a.task == task
        ]
        headers = ["run", "items", "errors", "accuracy", "95% CI (Wilson)"]
        lines += [tabulate(accuracy, headers, "github", disable_numparse=True), ""]
        of_task = [c for c in result.comparisons if c.task == task]
        if task in result.no_baseline:
            lines += [f"Not compared: the baseline `{result.baseline}` has no items of {task}.", ""]
            continue
        if not of_task:
            continue
        holm = " (Holm: adjusted over the task's comparisons)" if len(of_task) > 1 else ""
        lines += [f"Against the baseline `{result.baseline}`, on the items both ran{holm}:", ""]
        rows = [
            [c.candidate, c.n, c.baseline_only, c.candidate_only, _num(c.baseline_accuracy),
             _num(c.candidate_accuracy), _num(c.delta, 3), _interval(c.delta_ci95),
             _p(c.p_value_mcnemar), *([_p(c.p_value)] if holm else []), c.wins, c.losses]
            for c in of_task
        ]  # fmt: skip
        headers = ["run", "paired", "only baseline", "only run", "baseline acc", "run acc",
                   "delta", "delta 95% CI", "McNemar p", *(["Holm p"] if holm else []),
                   "wins", "losses"]  # fmt: skip
        lines += [tabulate(rows, headers, "github", disable_numparse=True), ""]
        for c in of_task:
            unpaired = f"{c.baseline_only} only in `{c.baseline}`, {c.candidate_only} only in "
            lines.append(
                f"- `{c.candidate}` ({unpaired}`{c.candidate}`): right only here: "
                f"{_ids(c.won)}; right only in the baseline: {_ids(c.lost)}; other answer: "
                f"{len(result.answers_differ.get((task, c.candidate), []))} items"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
