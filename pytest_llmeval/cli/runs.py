"""Saved runs as the command line finds them: run directories, report.json paths, globs.

A run directory holds report.json and items.jsonl (what every pytest-llmeval run writes);
both are validated against the shipped schemas (`report/schema.py`). A path that is missing,
not a run, or of another schema version is a `RunError` naming the file and the fix.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.report.envelope import RunReport
from pytest_llmeval.report.schema import ReportError, load_items, load_report

REPORT = "report.json"
ITEMS = "items.jsonl"


class RunError(ValueError):
    """A saved run cannot be used; the message names the path and the fix."""


@dataclass
class SavedRun:
    """One saved run: its folder, report and item records."""

    folder: Path
    report: RunReport
    records: list[ItemRecord]

    @property
    def name(self) -> str:
        """How tables and figures name the run: its folder's name."""
        return self.folder.name


def expand(paths: Sequence[str]) -> list[Path]:
    """The report.json files `paths` name: a run folder, a report.json, or a glob of either
    (`reports/*`), in the order given (a glob's matches sorted); a glob's matches that hold
    no report.json are skipped, a folder named directly without one is an error."""
    found: list[Path] = []
    for text in paths:
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        if not matches:
            raise RunError(f"{text}: no run matches; give run folders or report.json paths")
        for match in matches:
            path = Path(match)
            report = path / REPORT if path.is_dir() else path
            if glob.has_magic(text) and not (report.name == REPORT and report.exists()):
                continue  # a glob's other files and folders (notes, plots) are no runs
            if path.is_dir() and not report.exists():
                raise RunError(f"{path}: not a run folder (no {REPORT} in it)")
            found.append(report)
    if not found:
        raise RunError(f"{' '.join(paths)}: no run folder with a {REPORT} found")
    return list(dict.fromkeys(found))


def load_run(report_path: Path) -> SavedRun:
    """The run whose report is `report_path` (its items.jsonl beside it)."""
    if not report_path.exists():
        raise RunError(f"{report_path}: no such file; give a run folder or its {REPORT}")
    try:
        report = load_report(report_path)
        items = report_path.parent / report.files.get("items", ITEMS)
        if not items.exists():
            raise RunError(f"{items}: missing; the run's item records are needed beside {REPORT}")
        records = load_items(items)
    except ReportError as exc:
        raise RunError(str(exc)) from None
    return SavedRun(report_path.parent, report, records)


def load_runs(paths: Sequence[str]) -> list[SavedRun]:
    """Every run `paths` name, in order (see `expand`)."""
    return [load_run(path) for path in expand(paths)]


def run_names(runs: Sequence[SavedRun]) -> list[str]:
    """A name per run for tables, figures and findings: its folder's name, or its last k path
    parts when names would clash (`main/out`, `pr/out`)."""
    paths = [run.folder.resolve() for run in runs]
    depth = max((len(p.parts) for p in paths), default=1)
    for k in range(1, depth + 1):
        names = ["/".join(p.parts[-k:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]  # the same run given twice: its whole path
