"""Arms side by side: every arm of a task against the baseline arm, on the same items.

An arm is what the bracket suffix of an item's test name names (`gsm8k/test/0042[qwen7b]`):
a model given with `--model` (or named with `--model ARM=SPEC`), a task's prompt variant
(`[cot]`), or both (`[qwen7b-cot]`); the record keeps it in `arm`. `arm_of` is the one place
that says which arm a record belongs to. The baseline arm is the one named with
`--llmeval-baseline-arm`, else each task's first arm in collection order.

Records of two arms are paired by item id (`<task>/<split>/<row>`); an item only one arm has
is counted (`baseline_only`, `candidate_only`), never paired. Pairs are taken in item-id
order, so the figures do not depend on the order records arrived in (xdist or not). The
statistics are those of `pytest_llmeval.analyze.paired`. Pure: no pytest, no torch.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_llmeval.analyze.paired import (
    PairCounts,
    holm,
    mcnemar_exact,
    paired_bootstrap_interval,
    paired_difference_interval,
    wilcoxon_signed_rank,
)
from pytest_llmeval.analyze.record import SCHEMA_CONFIG, ItemRecord

UNPARSED = "[invalid]"
"""What a scorer puts in `extracted` when it found no answer."""


def arm_of(record: ItemRecord) -> str:
    """The arm a record belongs to: its `arm` (records that predate arms: its model)."""
    return record.arm or record.model


@dataclass
class ArmFailures:
    """What went wrong on one arm's items of a task (all of its records, paired or not)."""

    __pydantic_config__ = SCHEMA_CONFIG

    errors: int
    """Records whose outcome is `error` (nothing to score): `timeouts` + `backend_errors`."""
    timeouts: int
    """Errors whose message says the request timed out (`timed out`, `timeout`)."""
    backend_errors: int
    """Other errors: the backend or API failed, the model did not load, the worker crashed."""
    unparsed: int
    """Records that were scored but whose answer could not be extracted (`extracted` None or
    `[invalid]`): a wrong answer by format, not by content."""


@dataclass
class ArmComparison:
    """One candidate arm against the baseline arm on the items of one task.

    Correctness is the record's `correct` (an error counts as not correct, as in `accuracy`);
    deltas are candidate minus baseline.
    """

    __pydantic_config__ = SCHEMA_CONFIG

    task: str
    """The task compared."""
    baseline: str
    """The baseline arm (`--llmeval-baseline-arm`, default the task's first arm in collection
    order)."""
    candidate: str
    """The arm compared with the baseline."""
    n: int
    """Paired items: items both arms have a record of (the n of every figure below)."""
    baseline_only: int
    """Items only the baseline has a record of (not paired, not in the figures)."""
    candidate_only: int
    """Items only the candidate has a record of (not paired, not in the figures)."""
    baseline_accuracy: float | None
    """Share of the paired items the baseline got right; None with no pairs."""
    candidate_accuracy: float | None
    """Share of the paired items the candidate got right; None with no pairs."""
    delta: float | None
    """`candidate_accuracy - baseline_accuracy` (a share, -1..1); None with no pairs."""
    delta_ci95: list[float] | None
    """95% interval of `delta`: Newcombe's method 10 for paired proportions (the two arms'
    Wilson intervals combined with the correlation of the pairs); None with no pairs."""
    p_value_mcnemar: float | None
    """Two-sided exact McNemar p-value of "the arms are equally accurate": a Binomial(wins +
    losses, 1/2) test on the discordant items; 1.0 when none is discordant; None with no pairs."""
    p_value: float | None
    """`p_value_mcnemar`, Holm-Bonferroni adjusted over the task's comparisons when the task
    has several candidate arms (what a `p_value(arm)` gate reads)."""
    wins: int
    """Items the candidate got right and the baseline wrong."""
    losses: int
    """Items the baseline got right and the candidate wrong."""
    ties: int
    """Items both got right or both got wrong."""
    latency_delta_p50: float | None
    """Seconds: median over items both arms generated in this run (cached items have no
    latency) of candidate latency minus baseline latency; None when there are none."""
    latency_n: int
    """Items `latency_delta_p50` is computed over."""
    baseline_failures: ArmFailures
    """The baseline's errors and unparsed answers on this task."""
    candidate_failures: ArmFailures
    """The candidate's errors and unparsed answers on this task."""
    continuous: bool
    """Whether the task's scores are not all 0 or 1 (partial credit): then the score figures
    below are set."""
    score_delta: float | None
    """Mean over pairs with both scores of candidate score minus baseline score (0..1 scores);
    None unless `continuous`."""
    score_delta_ci95: list[float] | None
    """95% percentile bootstrap interval of `score_delta` (10,000 resamples, seed 0, pairs in
    item-id order); None unless `continuous` with at least two pairs."""
    score_p_value: float | None
    """Two-sided Wilcoxon signed-rank p-value of the score differences (zeros dropped; exact up
    to 50 non-zero differences, normal approximation above); None unless `continuous`."""
    score_n: int
    """Pairs where both arms have a score (the n of the score figures)."""
    won: list[str]
    """Item ids of the wins (flipped to right), in id order."""
    lost: list[str]
    """Item ids of the losses (flipped to wrong), in id order."""


Pair = tuple[ItemRecord, ItemRecord]
"""A baseline record and a candidate record of the same item."""


def arms_in(records: Iterable[ItemRecord], order: Sequence[str] = ()) -> list[str]:
    """The arms of `records`: those named in `order` first (in that order), then the others
    in the order they appear."""
    seen = {arm_of(r): None for r in records}
    return [a for a in dict.fromkeys(order) if a in seen] + [a for a in seen if a not in order]


def _by_task_and_arm(records: Iterable[ItemRecord]) -> dict[str, dict[str, dict[str, ItemRecord]]]:
    """task -> arm -> item id -> record, for the items of tasks (not hand-written tests)."""
    table: dict[str, dict[str, dict[str, ItemRecord]]] = {}
    for record in records:
        if record.source == "task":
            table.setdefault(record.task, {}).setdefault(arm_of(record), {})[record.id] = record
    return table


def baseline_of(arms: Sequence[str], baseline: str | None) -> str:
    """A task's baseline arm: `baseline` when named, else the first of its `arms` (ordered)."""
    return baseline if baseline is not None else arms[0]


def paired_records(
    records: Iterable[ItemRecord], baseline: str | None, order: Sequence[str] = ()
) -> dict[tuple[str, str], list[Pair]]:
    """(task, candidate arm) -> the (baseline, candidate) records of the items both have, in
    item-id order; for every task the baseline ran with at least one other arm (`baseline`
    None: each task's first arm in `order`)."""
    pairs: dict[tuple[str, str], list[Pair]] = {}
    for task, arms in _by_task_and_arm(records).items():
        ordered = arms_in((r for items in arms.values() for r in items.values()), order)
        task_baseline = baseline_of(ordered, baseline)
        base = arms.get(task_baseline)
        if base is None:
            continue
        for arm in ordered:
            if arm == task_baseline:
                continue
            items = arms[arm]
            pairs[(task, arm)] = [(base[i], items[i]) for i in sorted(base.keys() & items.keys())]
    return pairs


def is_right(record: ItemRecord) -> bool:
    """Whether the item counts as right (an error or an unscored item does not)."""
    return record.correct is True


def failures(records: Iterable[ItemRecord]) -> ArmFailures:
    """Errors by kind and unparsed answers among `records`."""
    errors = [r.error or "" for r in records if r.outcome == "error"]
    timeouts = sum(1 for e in errors if "timed out" in e.lower() or "timeout" in e.lower())
    unparsed = sum(1 for r in records if r.outcome != "error" and r.extracted in (None, UNPARSED))
    return ArmFailures(
        errors=len(errors),
        timeouts=timeouts,
        backend_errors=len(errors) - timeouts,
        unparsed=unparsed,
    )


def compare_pairs(
    task: str,
    baseline: str,
    candidate: str,
    pairs: Sequence[Pair],
    baseline_records: Sequence[ItemRecord],
    candidate_records: Sequence[ItemRecord],
) -> ArmComparison:
    """One comparison from its pairs and each arm's records of the task (for the unpaired
    counts and failures); `p_value` is the unadjusted one (`compare_arms` adjusts it)."""
    counts = PairCounts.of([(is_right(b), is_right(c)) for b, c in pairs])
    n = counts.n
    interval = paired_difference_interval(counts)
    p_value = mcnemar_exact(counts) if n else None
    latencies = [
        c.latency_s - b.latency_s
        for b, c in pairs
        if b.latency_s is not None and c.latency_s is not None
    ]
    scored = [(b.score, c.score) for b, c in pairs if b.score is not None and c.score is not None]
    continuous = any(s not in (0.0, 1.0) for pair in scored for s in pair)
    differences = [c - b for b, c in scored]
    return ArmComparison(
        task=task,
        baseline=baseline,
        candidate=candidate,
        n=n,
        baseline_only=len(baseline_records) - n,
        candidate_only=len(candidate_records) - n,
        baseline_accuracy=(counts.both + counts.only_a) / n if n else None,
        candidate_accuracy=(counts.both + counts.only_b) / n if n else None,
        delta=counts.delta if n else None,
        delta_ci95=list(interval) if interval else None,
        p_value_mcnemar=p_value,
        p_value=p_value,
        wins=counts.only_b,
        losses=counts.only_a,
        ties=counts.both + counts.neither,
        latency_delta_p50=statistics.median(latencies) if latencies else None,
        latency_n=len(latencies),
        baseline_failures=failures(baseline_records),
        candidate_failures=failures(candidate_records),
        continuous=continuous,
        score_delta=statistics.fmean(differences) if continuous and differences else None,
        score_delta_ci95=_listed(paired_bootstrap_interval(differences)) if continuous else None,
        score_p_value=wilcoxon_signed_rank(differences) if continuous and differences else None,
        score_n=len(differences),
        won=[b.id for b, c in pairs if not is_right(b) and is_right(c)],
        lost=[b.id for b, c in pairs if is_right(b) and not is_right(c)],
    )


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval else None


def compare_arms(
    records: Iterable[ItemRecord], baseline: str | None, order: Sequence[str] = ()
) -> list[ArmComparison]:
    """Every arm against `baseline` (None: each task's first arm in `order`), per task that
    the baseline and another arm ran; tasks in the order they first appear, arms in `order`
    (the collection order). Holm-adjusts the p-values of a task's comparisons when it has
    several."""
    records = list(records)
    table = _by_task_and_arm(records)
    arms_of_task = task_arms(records, order)
    results: list[ArmComparison] = []
    for (task, candidate), pairs in paired_records(records, baseline, order).items():
        arms = table[task]
        task_baseline = baseline_of(arms_of_task[task], baseline)
        results.append(
            compare_pairs(
                task,
                task_baseline,
                candidate,
                pairs,
                list(arms[task_baseline].values()),
                list(arms[candidate].values()),
            )
        )
    for task in table:
        of_task = [c for c in results if c.task == task and c.p_value_mcnemar is not None]
        if len(of_task) > 1:
            adjusted = holm([c.p_value_mcnemar for c in of_task if c.p_value_mcnemar is not None])
            for comparison, p in zip(of_task, adjusted, strict=True):
                comparison.p_value = p
    return results


def task_arms(records: Iterable[ItemRecord], order: Sequence[str] = ()) -> dict[str, list[str]]:
    """task -> the arms that ran it (in `order` first), for gates that name an arm."""
    return {
        task: arms_in((r for items in arms.values() for r in items.values()), order)
        for task, arms in _by_task_and_arm(records).items()
    }


@dataclass
class Compared:
    """A run's arm comparisons with what they were computed from (not part of the report)."""

    records: int
    """How many records they were computed from (recomputed when more arrive)."""
    comparisons: list[ArmComparison]
    pairs: dict[tuple[str, str], list[Pair]]
    arms: dict[str, list[str]]
    """task -> the arms that ran it."""
    baselines: dict[str, str]
    """task -> its baseline arm."""


def compare_run(
    records: Sequence[ItemRecord], baseline: str | None, order: Sequence[str]
) -> Compared:
    """Everything the controller shows and gates about arms, from a run's records
    (`baseline` None: each task's first arm in `order`)."""
    arms = task_arms(records, order)
    return Compared(
        records=len(records),
        comparisons=compare_arms(records, baseline, order),
        pairs=paired_records(records, baseline, order),
        arms=arms,
        baselines={task: baseline_of(ran, baseline) for task, ran in arms.items()},
    )
