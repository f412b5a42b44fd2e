"""The checks of `pytest-llmeval audit` on one saved run: what deserves a second look.

Each check reads one saved run (report.json and items.jsonl, already validated) and returns
`Finding`s (duplicates across runs are found in `audit.py`). The item records are the source of
truth: figures in report.json are recomputed from them, never the other way round. Pure: no
pytest, no model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_llmeval.analyze.aggregate import group_records, is_correct
from pytest_llmeval.analyze.performance import BATCH_WALL_PREFIX
from pytest_llmeval.analyze.record import ItemRecord, Votes
from pytest_llmeval.analyze.stats import percentile
from pytest_llmeval.cli.runs import SavedRun

KINDS = (
    "dirty-tree",
    "missing-tokens",
    "latency-outlier",
    "error-rate",
    "inconsistent-item",
    "inconsistent-metrics",
    "duplicate-run",
)
"""Every kind of finding, in the order the checks run."""

RUN_WIDE = "*"
"""The task and arm of a finding about the whole run."""

# Quartiles of fewer latencies are two or three of the values themselves: no fence to speak of.
MIN_LATENCIES = 8
EXAMPLES = 3


@dataclass
class Thresholds:
    """The limits the checks flag against (the command's options)."""

    max_error_rate: float = 0.05
    """An arm whose share of errored items is above this is flagged."""
    latency_iqr: float = 3.0
    """Latency outlier fence: above Q3 + this x IQR of the arm's generated items (Tukey's
    'far out' fence: robust to the right skew of latencies, where a mean/sd rule is not)."""
    latency_min_s: float = 1.0
    """An outlier must also be this many seconds above the median, so that microsecond jitter
    of a fast backend (IQR near 0) is not flagged."""


@dataclass
class Finding:
    """One thing flagged in one run: where, what was found and why it matters."""

    run: str
    kind: str
    task: str
    arm: str
    what: str
    why: str
    items: list[str] = field(default_factory=list)
    """The item ids concerned (all of them; the line shows a few)."""

    def line(self) -> str:
        """`RUN: [kind] task/arm: what, why it matters`."""
        where = RUN_WIDE if self.task == RUN_WIDE else f"{self.task}/{self.arm}"
        return f"{self.run}: [{self.kind}] {where}: {self.what}, {self.why}"

    def as_json(self) -> dict[str, Any]:
        """The finding as a JSON object (the `--format json` entry)."""
        return asdict(self)


def _ids(records: Iterable[ItemRecord]) -> list[str]:
    return [r.id for r in records]


def _examples(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:EXAMPLES])
    return shown + (f" and {len(ids) - EXAMPLES} more" if len(ids) > EXAMPLES else "")


def audit_run(saved: SavedRun, name: str, limits: Thresholds) -> list[Finding]:
    """Every finding of one run (`name` is how lines call it)."""
    found = _dirty(saved, name)
    groups = group_records(saved.records)
    for (task, arm), records in groups.items():
        found += _tokens(name, task, arm, records)
        found += _latency(name, task, arm, records, limits)
        found += _error_rate(name, task, arm, records, limits)
        found += _items(name, task, arm, records, _threshold(saved, task))
    found += _metrics(saved, name, groups)
    return found


def _dirty(saved: SavedRun, name: str) -> list[Finding]:
    git = saved.report.git
    if git is None or not git.dirty:
        return []
    what = f"made from a checkout with uncommitted changes (commit {git.commit[:12]})"
    why = "the code that produced it cannot be recovered from the commit"
    return [Finding(name, "dirty-tree", RUN_WIDE, RUN_WIDE, what, why)]


def _tokens(name: str, task: str, arm: str, records: list[ItemRecord]) -> list[Finding]:
    generated = [r for r in records if r.cached is False]
    missing = [r for r in generated if r.tokens_out is None]
    if not missing:
        return []
    examples = _examples(_ids(missing))
    what = f"{len(missing)} of {len(generated)} generated items have no tokens_out ({examples})"
    why = "tokens/s, cost and token-share energy of the arm are unknown or understated"
    return [Finding(name, "missing-tokens", task, arm, what, why, _ids(missing))]


def _latency(
    name: str, task: str, arm: str, records: list[ItemRecord], limits: Thresholds
) -> list[Finding]:
    # An item's own latency only: a cached item has none, and one that only has its batch's
    # wall time shares it with the whole batch (as the metrics' percentiles leave it out).
    timed = [
        r
        for r in records
        if r.cached is False
        and r.latency_s is not None
        and not (r.latency_method or "").startswith(BATCH_WALL_PREFIX)
    ]
    values = [float(r.latency_s) for r in timed if r.latency_s is not None]
    if len(values) < MIN_LATENCIES:
        return []
    q1, median, q3 = (percentile(values, q) or 0.0 for q in (25, 50, 75))
    fence = max(q3 + limits.latency_iqr * (q3 - q1), median + limits.latency_min_s)
    slow = sorted(
        (r for r in timed if (r.latency_s or 0.0) > fence), key=lambda r: -(r.latency_s or 0.0)
    )
    if not slow:
        return []
    worst = ", ".join(f"{r.id} {r.latency_s:.2f} s" for r in slow[:EXAMPLES])
    what = (
        f"{len(slow)} of {len(values)} item latencies above {fence:.2f} s "
        f"(Q3 + {limits.latency_iqr:g} x IQR; median {median:.2f} s): {worst}"
    )
    why = "they inflate latency_p95 and may be stalls, retries or a swapping model"
    return [Finding(name, "latency-outlier", task, arm, what, why, _ids(slow))]


def _error_rate(
    name: str, task: str, arm: str, records: list[ItemRecord], limits: Thresholds
) -> list[Finding]:
    errors = [r for r in records if r.outcome == "error"]
    rate = len(errors) / len(records) if records else 0.0
    if rate <= limits.max_error_rate:
        return []
    common, count = Counter((r.error or "no message") for r in errors).most_common(1)[0]
    what = (
        f"error rate {rate:.3f} ({len(errors)}/{len(records)}) above {limits.max_error_rate:g}; "
        f"most common ({count}x): {common}"
    )
    why = "errored items count as wrong, so accuracy measures the setup as much as the model"
    return [Finding(name, "error-rate", task, arm, what, why, _ids(errors))]


def _threshold(saved: SavedRun, task: str) -> float | None:
    info = saved.report.tasks.get(task)
    return info.declaration.pass_threshold if info and info.declaration else None


def _verdict(votes: Votes) -> bool:
    """A sampled item's correctness by what its verdict follows (as the run decides it)."""
    if votes.pass_by == "selected":
        return votes.selected_correct is True
    if votes.pass_by == "any":
        return votes.correct > 0
    return votes.majority_correct


def _item_problems(record: ItemRecord, threshold: float | None) -> list[str]:
    """What is inconsistent in one record: outcome vs correct vs score (vs votes)."""
    problems = []
    # In agreement runs the outcome is whether the labels agree; a hand-written test's is the
    # test's own: neither need follow `correct`.
    if (
        record.comparison is None
        and record.source == "task"
        and record.outcome in ("pass", "fail")
        and record.correct is not None
        and (record.outcome == "pass") != record.correct
    ):
        problems.append(f"outcome {record.outcome} but correct {record.correct}")
    if record.correct is True and record.score is None:
        problems.append("correct True but score None")
    if record.correct is None:
        return problems
    if record.votes is not None:
        # A sampled item's score is the followed candidate's; its verdict is the vote's.
        if record.correct != _verdict(record.votes):
            problems.append(
                f"correct {record.correct} but its votes (pass_by {record.votes.pass_by}) "
                f"say {not record.correct}"
            )
    elif (
        threshold is not None
        and record.score is not None
        and (record.score >= threshold) != record.correct
    ):
        side = ">=" if record.score >= threshold else "<"
        problems.append(f"score {side} pass_threshold {threshold:g} but correct {record.correct}")
    return problems


def _items(
    name: str, task: str, arm: str, records: list[ItemRecord], threshold: float | None
) -> list[Finding]:
    by_problem: dict[str, list[str]] = {}
    for record in records:
        for problem in _item_problems(record, threshold):
            by_problem.setdefault(problem, []).append(record.id)
    why = "pass/fail, accuracy and the gates disagree about these items"
    return [
        Finding(
            name,
            "inconsistent-item",
            task,
            arm,
            f"{len(ids)} items {problem} ({_examples(ids)})",
            why,
            ids,
        )
        for problem, ids in by_problem.items()
    ]


def _metrics(
    saved: SavedRun, name: str, groups: dict[tuple[str, str], list[ItemRecord]]
) -> list[Finding]:
    why = "report.json and items.jsonl disagree: the report was edited, truncated or mixed up"
    found = []
    if saved.report.totals.items != len(saved.records):
        stated, count = saved.report.totals.items, len(saved.records)
        what = f"totals.items {stated} but items.jsonl has {count} records"
        found.append(Finding(name, "inconsistent-metrics", RUN_WIDE, RUN_WIDE, what, why))
    reported = {
        (task, arm): result.metrics
        for task, info in saved.report.tasks.items()
        for arm, result in info.models.items()
    }
    for key in groups.keys() - reported.keys():
        what = f"{len(groups[key])} records in items.jsonl but no metrics in report.json"
        found.append(Finding(name, "inconsistent-metrics", *key, what, why))
    for (task, arm), metrics in reported.items():
        records = groups.get((task, arm), [])
        n, correct = len(records), sum(1 for r in records if is_correct(r))
        problems = []
        if metrics.n != n:
            problems.append(f"metrics.n {metrics.n} but {n} records")
        accuracy = correct / n if n else None
        if (metrics.accuracy is None) != (accuracy is None) or (
            accuracy is not None and abs((metrics.accuracy or 0.0) - accuracy) > 1e-9
        ):
            shown = "None" if metrics.accuracy is None else f"{metrics.accuracy:.4f}"
            problems.append(f"accuracy {shown} but {correct}/{n} records correct")
        errors = sum(1 for r in records if r.score is None)
        if metrics.n_errors != errors:
            problems.append(f"n_errors {metrics.n_errors} but {errors} records without a score")
        found += [Finding(name, "inconsistent-metrics", task, arm, p, why) for p in problems]
    return found
