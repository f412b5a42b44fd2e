"""`pytest-llmeval audit RUN...`: flag saved runs that deserve a second look, no model needed.

One line per finding, `RUN: [kind] task/arm: what, why it matters`, then a summary; the
checks are in `audit_checks.py`. The exit status is 1 when anything is flagged (so CI can
gate on it), 0 when every run is clean, 2 when a run cannot be read.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tabulate import tabulate

from pytest_llmeval.cli.audit_checks import (
    KINDS,
    RUN_WIDE,
    Finding,
    Thresholds,
    audit_run,
)
from pytest_llmeval.cli.runs import RunError, SavedRun, load_runs, run_names

_DEFAULTS = Thresholds()


def add_parser(subparsers: Any) -> None:
    """`audit RUN... [--max-error-rate R] [--latency-iqr K] [--latency-min-s S] [--skip KIND]
    [--format text|md|json]`."""
    parser = subparsers.add_parser(
        "audit",
        help="flag missing token counts, latency outliers, high error rates, inconsistent "
        "scores or metrics, duplicate runs and dirty checkouts; exit 1 when anything is flagged",
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="run folders, report.json paths or globs"
    )
    parser.add_argument(
        "--max-error-rate", type=float, default=_DEFAULTS.max_error_rate, metavar="R",
        help="Flag an arm whose share of errored items is above R "
        f"(default {_DEFAULTS.max_error_rate:g})",
    )  # fmt: skip
    parser.add_argument(
        "--latency-iqr", type=float, default=_DEFAULTS.latency_iqr, metavar="K",
        help="Flag item latencies above Q3 + K x IQR of the arm's generated items "
        f"(default {_DEFAULTS.latency_iqr:g})",
    )  # fmt: skip
    parser.add_argument(
        "--latency-min-s", type=float, default=_DEFAULTS.latency_min_s, metavar="S",
        help="A latency outlier must also be S seconds above the median "
        f"(default {_DEFAULTS.latency_min_s:g})",
    )  # fmt: skip
    parser.add_argument(
        "--skip", action="append", default=[], choices=KINDS, metavar="KIND",
        help=f"Leave out one kind of finding; repeatable ({', '.join(KINDS)})",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("text", "md", "json"), default="text",
        help="Findings as lines (default), a Markdown table or JSON",
    )  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    limits = _thresholds(args)
    saved = load_runs(args.runs)
    findings = [f for f in audit(saved, limits) if f.kind not in args.skip]
    names = [name for name, _ in _named(saved)]
    if args.format == "json":
        print(json.dumps(as_json(names, findings, limits), indent=2))
    elif args.format == "md":
        print(as_markdown(findings))
        print()
        print(summary(names, findings))
    else:
        for finding in findings:
            print(finding.line())
        print(summary(names, findings))
    return 1 if findings else 0


def _thresholds(args: argparse.Namespace) -> Thresholds:
    if not 0.0 <= args.max_error_rate <= 1.0:
        raise RunError(f"--max-error-rate {args.max_error_rate:g}: give a share between 0 and 1")
    if args.latency_iqr < 0 or args.latency_min_s < 0:
        raise RunError("--latency-iqr and --latency-min-s: give numbers of 0 or more")
    return Thresholds(args.max_error_rate, args.latency_iqr, args.latency_min_s)


def _named(runs: Sequence[SavedRun]) -> list[tuple[str, SavedRun]]:
    """Each run with the name its lines use (`runs.run_names`: `a/out`, `b/out` when two
    runs' folders share a name)."""
    return list(zip(run_names(runs), runs, strict=True))


def audit(runs: Sequence[SavedRun], limits: Thresholds | None = None) -> list[Finding]:
    """Every finding of `runs`, run by run, then the duplicates among them."""
    limits = limits or Thresholds()
    named = _named(runs)
    found = [finding for name, saved in named for finding in audit_run(saved, name, limits)]
    return found + duplicates(named)


def summary(names: Sequence[str], findings: Sequence[Finding]) -> str:
    """`N findings in K of M runs (kind: count, ...)`, or that every run is clean."""
    if not findings:
        return f"no findings in {len(names)} runs"
    kinds = Counter(f.kind for f in findings)
    flagged = len({f.run for f in findings})
    by_kind = ", ".join(f"{kind}: {kinds[kind]}" for kind in KINDS if kind in kinds)
    plural = "finding" if len(findings) == 1 else "findings"
    return f"{len(findings)} {plural} in {flagged} of {len(names)} runs ({by_kind})"


def as_markdown(findings: Sequence[Finding]) -> str:
    """A Markdown table of the findings (one row each)."""
    rows = [
        [f.run, f.kind, RUN_WIDE if f.task == RUN_WIDE else f"{f.task}/{f.arm}", f.what, f.why]
        for f in findings
    ]
    return tabulate(rows, ["run", "kind", "task/arm", "what", "why it matters"], "pipe")


def as_json(
    names: Sequence[str], findings: Sequence[Finding], limits: Thresholds
) -> dict[str, Any]:
    """The findings, the runs audited and the thresholds used, as one JSON object."""
    return {
        "runs": list(names),
        "thresholds": vars(limits),
        "findings": [f.as_json() for f in findings],
        "summary": summary(names, findings),
        "by_kind": dict(Counter(f.kind for f in findings)),
    }


def run_key(saved: SavedRun) -> str:
    """What makes two runs the same evaluation: the models (backend, model id, revision), each
    task's prompt, generation settings, scorer and data, and `--limit` with its seed."""
    report = saved.report
    tasks = {}
    for task, info in report.tasks.items():
        declared = info.declaration
        tasks[task] = {
            "arms": sorted(info.models),
            "data": info.data.sha256 if info.data else None,
            "prompts": sorted((a, p.prompt_sha256) for a, p in info.arms.items()),
            "declaration": None
            if declared is None
            else {k: v for k, v in asdict(declared).items() if k not in ("description", "gates")},
        }
    models = sorted((m.backend, m.model_id, m.revision) for m in report.settings.models)
    key = {
        "models": models,
        "tasks": tasks,
        "limit": report.settings.limit,
        "seed": report.settings.seed,
    }
    return json.dumps(key, sort_keys=True, default=str)


def duplicates(runs: Sequence[tuple[str, SavedRun]]) -> list[Finding]:
    """A finding for each run that repeats an earlier one given (see `run_key`)."""
    first: dict[str, str] = {}
    found = []
    for name, saved in runs:
        key = run_key(saved)
        if key in first:
            what = f"same models, tasks, generation settings, data, limit and seed as {first[key]}"
            why = "compare, ensemble and plot would count this evaluation twice"
            found.append(Finding(name, "duplicate-run", RUN_WIDE, RUN_WIDE, what, why))
        else:
            first[key] = name
    return found
