"""Checks that the run's report files can be written, made before any model work.

Otherwise a bad path shows only at the end, after the whole run (a directory that cannot be
created, a path that is a directory: files landing in the wrong place, a traceback). Each
check returns a one-line problem naming the option, the path and the fix, or None.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def file_problem(path: Path, option: str, shown: str, example: str) -> str | None:
    """Why the file `path` (given as `option shown`) cannot be written, or None.

    `example` is a file name that fits, for the hint when `path` is a directory.
    """
    if path.is_dir():
        hint = f"{shown.rstrip('/')}/{example}"
        return f"{option} {shown}: {path} is a directory; give a file path such as {hint}"
    problem = directory_problem(path.parent)
    if problem is not None:
        return f"{option} {shown}: cannot create directory {path.parent}: {problem}"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{option} {shown}: {path} is not writable; choose another path"
    return None


def sibling_problem(folder: Path, names: Iterable[str], option: str, shown: str) -> str | None:
    """Why a file written beside the report (items.jsonl, ...) cannot be, or None."""
    for name in names:
        if (folder / name).is_dir():
            return (
                f"{option} {shown}: {folder / name} is a directory, and the report writes a "
                f"file of that name beside report.json; remove it or choose another directory"
            )
    return None


def directory_problem(folder: Path) -> str | None:
    """Why `folder` cannot be created or written into, or None: the first existing ancestor
    must be a directory we may write in (root may write anywhere; a file never holds one)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file; choose another path"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable; choose another path"
    return None


REPORT_FILES = ("items.jsonl", "items.parquet", "summary.md", "agreement.parquet")
"""The files written beside report.json."""


def report_paths_problem(
    report_path: Path | None,
    shown: str,
    rootpath: Path,
    others: Iterable[tuple[str, str, str]],
) -> str | None:
    """The first reason a report file of this run cannot be written, or None.

    `report_path` is `--llmeval-report` (given as `shown`; None: the default under
    `rootpath/reports`); `others` are other plugins' report files as (option, given path,
    example file name), whose own checks come only at the end of the run.
    """
    problems = []
    if report_path is not None:
        problems.append(
            file_problem(report_path, "--llmeval-report", shown, "report.json")
            or sibling_problem(report_path.parent, REPORT_FILES, "--llmeval-report", shown)
        )
    else:
        folder = rootpath / "reports"
        problem = directory_problem(folder)
        if problem is not None:
            problems.append(
                f"report directory {folder}: {problem.removesuffix('; choose another path')}; "
                "remove it or pass --llmeval-report PATH"
            )
    for option, given, example in others:
        path = Path(os.path.expandvars(given)).expanduser().absolute()
        problems.append(file_problem(path, option, given, example))
    return next((problem for problem in problems if problem), None)
