"""Per task x model metrics from item records (pure functions; controller and saved runs).

Accuracy is the mean score over scored items (errors excluded and counted separately), with a
Wilson 95% interval. Throughput divides generated tokens by the summed wall time of the
distinct batches that produced them, so batched items are not double counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_llmeval.analyze.agreement import summarize_agreement
from pytest_llmeval.analyze.cost import Price, estimate_cost
from pytest_llmeval.analyze.hardware import ModelLoad, hardware_summary
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import ItemRecord, TaskInfo
from pytest_llmeval.analyze.stats import percentile, wilson_interval
from pytest_llmeval.score.labels import INVALID

TaskModel = tuple[str, str]


def group_records(records: Iterable[ItemRecord]) -> dict[TaskModel, list[ItemRecord]]:
    """Records grouped by (task, model), in first-seen order."""
    groups: dict[TaskModel, list[ItemRecord]] = defaultdict(list)
    for record in records:
        groups[(record.task, record.model)].append(record)
    return dict(groups)


def summarize_run(
    records: Sequence[ItemRecord],
    tasks: Mapping[str, TaskInfo],
    loads: Sequence[ModelLoad] = (),
    models: Mapping[str, tuple[str, str]] | None = None,
    prices: Mapping[str, Price] | None = None,
) -> dict[TaskModel, Metrics]:
    """Metrics of every task x model: the records' metrics, the model's hardware (from
    `loads`) and, for models named in `models` (name -> (backend, model id)), the cost."""
    summaries = {}
    for (task, model), group in group_records(records).items():
        info = tasks.get(task)
        extra: dict[str, Any] = hardware_summary(model, loads)
        if models is not None and model in models:
            backend, model_id = models[model]
            totals = _tokens(group)
            extra.update(estimate_cost(backend, model_id, *totals, prices or {}))
        summaries[(task, model)] = summarize(group, info.rows if info else None, **extra)
    return summaries


def _tokens(records: Sequence[ItemRecord]) -> tuple[int, int]:
    return (
        sum(int(r.tokens_in or 0) for r in records),
        sum(int(r.tokens_out or 0) for r in records),
    )


def summarize(records: Sequence[ItemRecord], task_rows: int | None = None, **extra: Any) -> Metrics:
    """Metrics of one task x model from its records; `extra` sets the hardware and cost fields.

    `task_rows` is the task's row count before selection (defaults to the records' count).
    """
    scored = [r for r in records if r.outcome in ("pass", "fail")]
    # An item whose reference backend failed is the reference's error (`reference_errors`).
    errors = [r for r in records if r.outcome == "error" and not _reference_failed(r)]
    n = len(scored)
    total = len(records)
    score_sum = sum(float(r.score or 0.0) for r in scored)
    parsed = sum(1 for r in scored if r.extracted not in (None, INVALID))
    # The primary's own generations: scored items and those whose reference failed.
    answered = [r for r in records if r.outcome != "error" or _reference_failed(r)]
    latencies = [float(r.latency_s) for r in answered if r.latency_s is not None]
    tokens_in, tokens_out = _tokens(records)
    batch_walls = {r.batch_id: float(r.batch_wall_s or 0.0) for r in records if r.batch_id}
    generation_s = sum(batch_walls.values())
    rows = total if task_rows is None else task_rows
    return Metrics(
        n=n,
        n_total=total,
        n_pass=sum(1 for r in scored if r.outcome == "pass"),
        n_errors=len(errors),
        task_rows=rows,
        partial=total < rows,
        accuracy=score_sum / n if n else None,
        accuracy_ci95=list(wilson_interval(score_sum, n)) if n else None,
        parse_rate=parsed / n if n else None,
        parse_rate_ci95=list(wilson_interval(parsed, n)) if n else None,
        error_rate=len(errors) / total if total else None,
        error_rate_ci95=list(wilson_interval(len(errors), total)) if total else None,
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
        latency_method=next((r.latency_method for r in records if r.latency_method), None),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        generation_s=round(generation_s, 4),
        batches=len(batch_walls),
        tokens_per_s=tokens_out / generation_s if generation_s > 0 else None,
        items_per_min=round(total * 60 / generation_s, 3) if generation_s > 0 else None,
        cached=sum(1 for r in records if r.cached is True),
        generated=sum(1 for r in records if r.cached is False),
        **_energy(records, tokens_out, generation_s),
        **_agreement(records),
        **extra,
    )


def _energy(records: Sequence[ItemRecord], tokens_out: int, generation_s: float) -> dict[str, Any]:
    """Energy per task x model from the distinct batches (None with a reason when unmeasured)."""
    batches = {r.batch_id: r for r in records if r.batch_id}
    values = [b.batch_energy_j for b in batches.values()]
    known = bool(values) and all(v is not None for v in values)
    energy_j = sum(float(v) for v in values if v is not None) if known else None
    reason = None
    if energy_j is None:
        reason = next((r.energy_reason for r in records if r.energy_reason), None)
        reason = reason or ("no generation batches" if not batches else "energy not measured")
    peaks = [float(b.batch_peak_w) for b in batches.values() if b.batch_peak_w]
    cpu = [r.cpu_energy_j for r in records if r.batch_id]
    cpu_known = bool(cpu) and all(v is not None for v in cpu)
    return {
        "energy_wh": None if energy_j is None else round(energy_j / 3600, 6),
        "energy_reason": reason,
        "energy_method": next((r.energy_method for r in records if r.energy_method), None),
        "j_per_token": None if energy_j is None or not tokens_out else energy_j / tokens_out,
        "avg_power_w": None if energy_j is None or generation_s <= 0 else energy_j / generation_s,
        "peak_power_w": max(peaks) if peaks else None,
        "cpu_energy_wh": round(sum(float(v or 0) for v in cpu) / 3600, 6) if cpu_known else None,
    }


def _agreement(records: Sequence[ItemRecord]) -> dict[str, Any]:
    """Agreement metrics when the records come from a --compare-backend run, else nothing."""
    comparisons = [r.comparison for r in records if r.comparison is not None]
    if not comparisons:
        return {}
    # Items that errored before they could be compared (data, primary) count against agreement.
    return summarize_agreement(comparisons, uncompared=len(records) - len(comparisons))


def _reference_failed(record: ItemRecord) -> bool:
    return record.comparison is not None and record.comparison.reference_error is not None
