"""Per task x model summaries from item records (controller side, pure functions).

Accuracy is the mean score over scored items (errors excluded and counted separately), with a
Wilson 95% interval. Throughput divides generated tokens by the summed wall time of the
distinct batches that produced them, so batched items are not double counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pytest_llmeval.analyze.agreement import summarize_agreement
from pytest_llmeval.analyze.stats import percentile, wilson_interval
from pytest_llmeval.score.labels import INVALID

Record = Mapping[str, Any]


def group_records(records: Iterable[Record]) -> dict[tuple[str, str], list[Record]]:
    """Records grouped by (task, model), in first-seen order."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record["task"], record["model"])].append(record)
    return dict(groups)


def _energy(records: list[Record], tokens_out: int, generation_s: float) -> dict[str, Any]:
    """Energy per task x model from the distinct batches (None with a reason when unmeasured)."""
    batches = {r["batch_id"]: r for r in records if r.get("batch_id")}
    values = [b.get("batch_energy_j") for b in batches.values()]
    known = bool(values) and all(v is not None for v in values)
    energy_j = sum(float(v) for v in values if v is not None) if known else None
    reason = None
    if energy_j is None:
        reason = next((r["energy_reason"] for r in records if r.get("energy_reason")), None)
        reason = reason or ("no generation batches" if not batches else "energy not measured")
    peaks = [float(b["batch_peak_w"]) for b in batches.values() if b.get("batch_peak_w")]
    cpu = [r.get("cpu_energy_j") for r in records if r.get("batch_id")]
    cpu_known = bool(cpu) and all(v is not None for v in cpu)
    return {
        "energy_wh": None if energy_j is None else round(energy_j / 3600, 6),
        "energy_reason": reason,
        "j_per_token": None if energy_j is None or not tokens_out else energy_j / tokens_out,
        "avg_power_w": None if energy_j is None or generation_s <= 0 else energy_j / generation_s,
        "peak_power_w": max(peaks) if peaks else None,
        "cpu_energy_wh": round(sum(float(v or 0) for v in cpu) / 3600, 6) if cpu_known else None,
        "energy_method": next(
            (r["energy_method"] for r in records if r.get("energy_method")), None
        ),
    }


def _agreement(records: list[Record]) -> dict[str, Any]:
    """Agreement metrics when the records come from a --compare-backend run, else nothing."""
    compared = [r for r in records if r.get("reference_model") and r["outcome"] != "error"]
    if not compared:
        return {}
    references = [float(r["reference_score"]) for r in compared]
    summary = summarize_agreement(compared)
    return {
        **{k: v for k, v in summary.items() if k != "n"},
        "reference_model": compared[0]["reference_model"],
        "reference_accuracy": sum(references) / len(references),
        "reference_accuracy_ci95": list(wilson_interval(sum(references), len(references))),
    }


def summarize(records: list[Record]) -> dict[str, Any]:
    """Metrics of one task x model: n, accuracy (+ci95), parse/error rates, latency, tokens."""
    scored = [r for r in records if r["outcome"] in ("pass", "fail")]
    errors = [r for r in records if r["outcome"] == "error"]
    n = len(scored)
    total = len(records)
    score_sum = sum(float(r["score"]) for r in scored)
    parsed = sum(1 for r in scored if r.get("extracted") not in (None, INVALID))
    latencies = [float(r["latency_s"]) for r in scored if r.get("latency_s") is not None]
    tokens_in = sum(int(r.get("tokens_in") or 0) for r in records)
    tokens_out = sum(int(r.get("tokens_out") or 0) for r in records)
    batch_walls = {r["batch_id"]: float(r["batch_wall_s"]) for r in records if r.get("batch_id")}
    generation_s = sum(batch_walls.values())
    task_rows = max((int(r.get("task_rows") or 0) for r in records), default=0)
    return {
        "n": n,
        "n_total": total,
        "n_pass": sum(1 for r in scored if r["outcome"] == "pass"),
        "n_errors": len(errors),
        "task_rows": task_rows,
        "partial": total < task_rows,
        "accuracy": score_sum / n if n else None,
        "accuracy_ci95": list(wilson_interval(score_sum, n)) if n else None,
        "parse_rate": parsed / n if n else None,
        "parse_rate_ci95": list(wilson_interval(parsed, n)) if n else None,
        "error_rate": len(errors) / total if total else None,
        "error_rate_ci95": list(wilson_interval(len(errors), total)) if total else None,
        "latency_p50": percentile(latencies, 50),
        "latency_p95": percentile(latencies, 95),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "generation_s": round(generation_s, 4),
        "batches": len(batch_walls),
        "tokens_per_s": tokens_out / generation_s if generation_s > 0 else None,
        "cached": sum(1 for r in records if r.get("cached") is True),
        "generated": sum(1 for r in records if r.get("cached") is False),
        "items_per_min": round(total * 60 / generation_s, 3) if generation_s > 0 else None,
        **_energy(records, tokens_out, generation_s),
        **_agreement(records),
        "latency_method": next(
            (r["latency_method"] for r in records if r.get("latency_method")), None
        ),
    }
