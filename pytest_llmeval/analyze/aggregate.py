"""Per task x model metrics from item records (pure functions; controller and saved runs).

Every selected item counts: an item that errored (no primary score) is not correct and not
parsed, so `accuracy`, `parse_rate` and `accuracy_strict` are over all `n` selected items,
and their `*_answered` twins are over the items that got a score. `accuracy` is the share of
items whose score reached the task's pass threshold (Wilson interval); `mean_score` is the
mean of the scores, an error counting 0 (Student-t interval). Speed, energy and cost come
from the items generated in this run (`pytest_llmeval.analyze.performance`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_llmeval.analyze import performance
from pytest_llmeval.analyze.agreement import summarize_agreement
from pytest_llmeval.analyze.compare import arm_of
from pytest_llmeval.analyze.cost import Price, estimate_cost
from pytest_llmeval.analyze.hardware import ModelLoad, hardware_summary
from pytest_llmeval.analyze.invariance import summarize_invariance
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import ItemRecord, TaskInfo
from pytest_llmeval.analyze.sampling import ItemSamples, sampling_metrics
from pytest_llmeval.analyze.stats import mean_interval, wilson_interval
from pytest_llmeval.analyze.task_metrics import task_figures
from pytest_llmeval.score.labels import INVALID

TaskModel = tuple[str, str]


def answer_parsed(extracted: str | None) -> bool:
    """Whether a scorer's extracted answer counts as parsed (`parse_rate`; the smoke run's
    verdict, run/smoke.py): not None, not the label scorer's `[invalid]`, and not blank (the
    exact scorer's answer to an empty reply is "", which is no answer either)."""
    return extracted is not None and extracted != INVALID and extracted.strip() != ""


# Extraction methods only number extraction reports ("flexible" is not one: the label scorer
# reads free text with it too). Without the task's declaration, a task whose records show one
# of them is taken to be numeric.
NUMBER_ONLY_METHODS = frozenset({"strict", "boxed"})


def group_records(records: Iterable[ItemRecord]) -> dict[TaskModel, list[ItemRecord]]:
    """Records grouped by (task, arm), in first-seen order (the arm is the model's name
    unless the task has prompt variants: each variant is measured and gated on its own)."""
    groups: dict[TaskModel, list[ItemRecord]] = defaultdict(list)
    for record in records:
        groups[(record.task, arm_of(record))].append(record)
    return dict(groups)


def summarize_run(
    records: Sequence[ItemRecord],
    tasks: Mapping[str, TaskInfo],
    loads: Sequence[ModelLoad] = (),
    models: Mapping[str, tuple[str, str]] | None = None,
    prices: Mapping[str, Price] | None = None,
) -> dict[TaskModel, Metrics]:
    """Metrics of every task x arm: the records' metrics, the arm's model's hardware (from
    `loads`) and, for models named in `models` (name -> (backend, model id)), the cost of
    the items generated in this run (a cached item costs nothing now)."""
    summaries = {}
    for (task, arm), group in group_records(records).items():
        info = tasks.get(task)
        model = group[0].model
        extra: dict[str, Any] = hardware_summary(model, loads)
        if models is not None and model in models:
            extra.update(
                estimate_cost(*models[model], *performance.token_totals(group), prices or {})
            )
        declared = info.declaration if info else None
        numeric = declared.scorer == "numeric" if declared else None
        if declared is not None:
            extra.update(
                task_figures(group, declared.labels, declared.metrics, declared.composites)
            )
        else:
            extra.update(task_figures(group))
        summaries[(task, arm)] = summarize(
            group, info.rows if info else None, numeric=numeric, **extra
        )
    return summaries


def _rate(hits: int, n: int) -> tuple[float | None, list[float] | None]:
    """A proportion and its Wilson 95% interval; None, None over no items."""
    if not n:
        return None, None
    return hits / n, list(wilson_interval(hits, n))


def is_correct(record: ItemRecord) -> bool:
    """Whether the item's score reached the task's pass threshold (an error never does)."""
    return record.score is not None and bool(record.correct)


def summarize(
    records: Sequence[ItemRecord],
    task_rows: int | None = None,
    numeric: bool | None = None,
    **extra: Any,
) -> Metrics:
    """Metrics of one task x model from its records; `extra` sets the hardware and cost fields.

    `task_rows` is the task's row count before selection (defaults to the records' count).
    `numeric`: whether the task uses the numeric scorer, so has `accuracy_strict` (None:
    inferred from the records' extraction methods).
    An item is an error for these figures when it has no primary score (`score` None).
    """
    n = len(records)
    answered = [r for r in records if r.score is not None]
    correct = [r for r in answered if is_correct(r)]
    parsed = sum(1 for r in answered if answer_parsed(r.extracted))
    errors = n - len(answered)
    # An errored item earns nothing: its score counts 0 in the mean, as in accuracy.
    scores = [float(r.score) if r.score is not None else 0.0 for r in records]
    accuracy, accuracy_ci95 = _rate(len(correct), n)
    answered_accuracy, answered_accuracy_ci95 = _rate(len(correct), len(answered))
    parse_rate, parse_rate_ci95 = _rate(parsed, n)
    parse_answered, parse_answered_ci95 = _rate(parsed, len(answered))
    error_rate, error_rate_ci95 = _rate(errors, n)
    strict, strict_ci95 = None, None
    if numeric is None:
        numeric = any(r.method in NUMBER_ONLY_METHODS for r in answered)
    if numeric:
        strict, strict_ci95 = _rate(sum(1 for r in correct if r.method == "strict"), n)
    interval = mean_interval(scores)
    rows = n if task_rows is None else task_rows
    return Metrics(
        n=n,
        n_answered=len(answered),
        n_pass=sum(1 for r in records if r.outcome == "pass"),
        n_correct=len(correct),
        n_errors=errors,
        task_rows=rows,
        partial=n < rows,
        accuracy=accuracy,
        accuracy_ci95=accuracy_ci95,
        accuracy_answered=answered_accuracy,
        accuracy_answered_ci95=answered_accuracy_ci95,
        accuracy_strict=strict,
        accuracy_strict_ci95=strict_ci95,
        mean_score=sum(scores) / n if n else None,
        mean_score_ci95=None if interval is None else list(interval),
        parse_rate=parse_rate,
        parse_rate_ci95=parse_rate_ci95,
        parse_rate_answered=parse_answered,
        parse_rate_answered_ci95=parse_answered_ci95,
        error_rate=error_rate,
        error_rate_ci95=error_rate_ci95,
        **performance.speed(records),
        **performance.energy(records),
        **_agreement(records),
        **summarize_invariance(records),
        **_sampling(records),
        **extra,
    )


def _agreement(records: Sequence[ItemRecord]) -> dict[str, Any]:
    """Agreement metrics when the records come from a --compare-backend run, else nothing."""
    comparisons = [r.comparison for r in records if r.comparison is not None]
    if not comparisons:
        return {}
    # Items that errored before they could be compared (data, primary) count against agreement.
    return summarize_agreement(comparisons, uncompared=len(records) - len(comparisons))


def _sampling(records: Sequence[ItemRecord]) -> dict[str, Any]:
    """Best-of-n metrics when the records come from a sampled task, else nothing; an item
    that errored counts as n wrong candidates (and a wrong selection, with a selector)."""
    voted = [r.votes for r in records if r.votes is not None]
    if not voted:
        return {}
    n = max(v.n for v in voted)
    selecting = any(v.selector is not None for v in voted)
    items = [
        ItemSamples(
            correct=tuple(s.correct for s in r.samples or ()),
            majority_correct=r.votes.majority_correct,
            agreement=r.votes.agreement,
            selected_correct=bool(r.votes.selected_correct) if selecting else None,
        )
        if r.votes is not None
        else ItemSamples((False,) * n, False, None, False if selecting else None)
        for r in records
    ]
    found = sampling_metrics(items)
    if found is None:
        return {}
    return {
        "samples_n": found.n,
        "mean_at_n": found.mean_at_n,
        "mean_at_n_ci95": list(found.mean_at_n_ci95),
        "maj_at_n": found.maj_at_n,
        "maj_at_n_ci95": list(found.maj_at_n_ci95),
        "oracle_at_n": found.oracle_at_n,
        "oracle_at_n_ci95": list(found.oracle_at_n_ci95),
        "pass_at_k": {str(k): v for k, v in found.pass_at_k.items()},
        "pass_at_k_ci95": {str(k): list(v) for k, v in found.pass_at_k_ci95.items()},
        "rerank_at_n": found.rerank_at_n,
        "rerank_at_n_ci95": None
        if found.rerank_at_n_ci95 is None
        else list(found.rerank_at_n_ci95),
        "self_consistency": found.self_consistency,
    }
