"""`pytest-llmeval ensemble RUN... --strategy S --name NAME`: a new run from saved runs' answers.

Every item (task, item id) that any member ran gets one record, its answer chosen among the
members' records by `--strategy` (`pytest_llmeval/analyze/ensemble.py`: majority vote,
first non-blank answer, or the most confident answer). Each arm of a member run votes, in
the order the runs are given and, within a run, the order its arms first appear; an item
some members did not run is voted on by those that did (the command says how many). The new
folder holds report.json and items.jsonl of the same schema as a pytest run, so every other
command reads it; `metadata.ensemble` names the strategy and the members.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pytest_llmeval.analyze.compare import arm_of
from pytest_llmeval.analyze.ensemble import STRATEGIES, Choice, choose, confidence_of
from pytest_llmeval.analyze.record import ItemRecord, Outcome
from pytest_llmeval.cli.ensemble_report import Member, ensemble_report
from pytest_llmeval.cli.runs import RunError, SavedRun, load_runs
from pytest_llmeval.report import runinfo
from pytest_llmeval.report.writers import ReportWriter

NO_GENERATION = "ensemble: no generation ran (answers chosen from member runs)"
"""The energy reason of every ensemble record: its figures are the members'."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

ItemKey = tuple[str, str]


def add_parser(subparsers: Any) -> None:
    """`ensemble RUN... [--strategy S] --name NAME [--out DIR] [--force]`."""
    parser = subparsers.add_parser(
        "ensemble", help="combine saved runs' answers item by item into a new run folder"
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN",
        help="run folders, report.json paths or globs; the order breaks ties",
    )  # fmt: skip
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default="majority",
        help="majority vote, first non-blank answer, or the most confident answer "
        "(default majority)",
    )  # fmt: skip
    parser.add_argument(
        "--name", required=True, help="the ensemble's model and arm name in the new run"
    )
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="the new run folder (default reports/NAME)"
    )
    parser.add_argument(
        "--force", action="store_true",
        help="write into a non-empty --out folder (its report.json and items.jsonl are replaced)",
    )  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    started, started_iso = time.time(), runinfo.now_iso()
    if not _NAME.fullmatch(args.name):
        raise RunError(
            f"--name {args.name!r}: use letters, digits, '.', '_' or '-' (it names the arm)"
        )
    out = Path(args.out) if args.out else Path("reports") / args.name
    members = load_runs(args.runs)
    _check_out(out, members, args.force)
    records, member_info, note = ensemble(members, args.strategy, args.name)
    report = ensemble_report(
        records, member_info, args.strategy, args.name, started, started_iso, note
    )
    writer = ReportWriter(out / "report.json")
    for record in records:
        writer.append_item(record)
    writer.write_report(report)
    rows = [
        [task, arm, f"{result.metrics.accuracy:.3f}" if result.metrics.accuracy is not None
         else "-", result.metrics.n]
        for task, info in report.tasks.items()
        for arm, result in info.models.items()
    ]  # fmt: skip
    print(tabulate(rows, ["task", "arm", "accuracy", "items"], "simple", disable_numparse=True))
    for line in note.values():
        print(line)
    print(f"wrote {out} (report.json, items.jsonl)")
    return 0


def _check_out(out: Path, members: list[SavedRun], force: bool) -> None:
    """Refuse a folder that is a file, a member run, or (without --force) not empty."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: a file, not a folder; give a folder for the new run")
    if any(out.resolve() == member.folder.resolve() for member in members):
        raise RunError(f"--out {out}: is one of the member runs; give a new folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise RunError(
            f"--out {out}: folder not empty; give another --out, or --force to replace "
            "its report.json and items.jsonl"
        )


def voters_by_item(members: list[SavedRun]) -> tuple[dict[ItemKey, list[ItemRecord]], int]:
    """Each item's records over the members (member order, then arm order), in first-seen
    item order; and the number of voters (member x arm). Hand-written tests' generations
    (`source` test) are not benchmark items and do not vote."""
    voters: dict[ItemKey, list[ItemRecord]] = {}
    arms: set[tuple[int, str]] = set()
    for position, member in enumerate(members):
        order = list(dict.fromkeys(arm_of(r) for r in member.records if r.source == "task"))
        for arm in order:
            arms.add((position, arm))
            for record in member.records:
                if record.source == "task" and arm_of(record) == arm:
                    voters.setdefault((record.task, record.id), []).append(record)
    return voters, len(arms)


def ensemble(
    members: list[SavedRun], strategy: str, name: str
) -> tuple[list[ItemRecord], list[Member], dict[str, str]]:
    """The ensemble's records, the members' provenance and notes on what was decided how."""
    voters, count = voters_by_item(members)
    if count < 2:
        raise RunError(
            f"{' '.join(str(m.folder) for m in members)}: {count} voter(s); an ensemble needs "
            "two runs or more (or a run with several arms)"
        )
    if strategy == "confidence" and not any(
        confidence_of(r) is not None for group in voters.values() for r in group
    ):
        raise RunError(
            f"{' '.join(str(m.folder) for m in members)}: no record carries a confidence "
            "(the mean token log-probability of sampled runs, --llmeval-samples N); use "
            "--strategy majority or first-non-blank"
        )
    choices = {key: choose(group, strategy) for key, group in voters.items()}
    records = [_record(choice, name) for choice in choices.values()]
    note: dict[str, str] = {}
    partial = sum(1 for group in voters.values() if len(group) < count)
    if partial:
        note["partial_items"] = (
            f"{partial} of {len(voters)} items were not run by every voter; "
            "voted on by those that ran them"
        )
    fallback = sum(1 for choice in choices.values() if choice.fallback)
    if fallback:
        note["confidence_fallback"] = (
            f"{fallback} items had no voter with a confidence: first-non-blank decided them"
        )
    member_info = [
        Member(
            run=str(member.folder),
            run_id=member.report.run_id,
            models=[m.name for m in member.report.settings.models],
            arms=list(dict.fromkeys(arm_of(r) for r in member.records if r.source == "task")),
            report=member.report,
        )
        for member in members
    ]
    return records, member_info, note


def _record(choice: Choice, name: str) -> ItemRecord:
    """The ensemble's record of one item: the chosen voter's item, answer, score and verdict
    under the ensemble's name; no generation ran, so no latency, tokens, batch or energy."""
    chosen = choice.record
    outcome: Outcome = "error" if chosen.score is None else "pass" if chosen.correct else "fail"
    return dataclasses.replace(
        chosen,
        # One node per item and ensemble: the member's arm bracket does not apply.
        nodeid=re.sub(r"\[[^\]]*\]$", "", chosen.nodeid) + f"[{name}]",
        model=name,
        arm=name,
        variant=None,
        worker=None,
        outcome=outcome,
        error=chosen.error if outcome == "error" else None,
        latency_s=None,
        latency_method=None,
        tokens_in=None,
        tokens_out=None,
        pad_tokens=None,
        batch_id=None,
        batch_size=None,
        batch_wall_s=None,
        cached=None,
        energy_j=None,
        cpu_energy_j=None,
        energy_reason=NO_GENERATION,
        energy_method=None,
        batch_energy_j=None,
        batch_avg_w=None,
        batch_peak_w=None,
        comparison=None,
        batch_invariant=None,
        invariance=None,
        # The chosen member's candidates and vote describe that member, not the ensemble.
        samples=None,
        votes=None,
    )
