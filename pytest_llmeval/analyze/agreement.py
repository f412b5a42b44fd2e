"""Backend agreement over a task: rates of the per-item comparisons (see
`pytest_llmeval.score.agreement`) with Wilson intervals, mean similarities and lengths, and
an assessment (PASS / CAUTION / FAIL). Pure functions: no pytest, no backends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.analyze.stats import mean, wilson_interval


@dataclass(frozen=True)
class Thresholds:
    """Assessment bands: at or above `*_pass` is PASS, at or above `*_caution` is CAUTION."""

    labels_pass: float = 0.95
    labels_caution: float = 0.90
    similarity_pass: float = 0.80
    similarity_caution: float = 0.60


def summarize_agreement(
    comparisons: Sequence[Mapping[str, Any]], thresholds: Thresholds | None = None
) -> dict[str, Any]:
    """Rates (with Wilson intervals), means and the assessment over a task's compared items."""
    limits = thresholds or Thresholds()
    n = len(comparisons)

    def rate(field: str) -> float | None:
        return sum(1 for c in comparisons if c.get(field)) / n if n else None

    def interval(field: str) -> list[float] | None:
        hits = sum(1 for c in comparisons if c.get(field))
        return list(wilson_interval(hits, n)) if n else None

    def average(field: str) -> float | None:
        return mean([float(c[field]) for c in comparisons if c.get(field) is not None])

    summary: dict[str, Any] = {
        "n": n,
        "agreement": rate("binary_match"),
        "agreement_ci95": interval("binary_match"),
        "finegrain_agreement": rate("finegrain_match"),
        "finegrain_agreement_ci95": interval("finegrain_match"),
        "primary_parse_rate": rate("primary_parsed"),
        "reference_parse_rate": rate("reference_parsed"),
        "both_parse_rate": rate("both_parsed"),
        "response_similarity": average("response_similarity"),
        "reasoning_similarity": average("reasoning_similarity"),
        "primary_response_chars": average("primary_response_chars"),
        "reference_response_chars": average("reference_response_chars"),
        "primary_reasoning_chars": average("primary_reasoning_chars"),
        "reference_reasoning_chars": average("reference_reasoning_chars"),
    }
    summary["assessment"] = assess(summary, limits)
    summary["thresholds"] = vars(limits)
    return summary


def assess(summary: Mapping[str, Any], limits: Thresholds) -> dict[str, str]:
    """PASS / CAUTION / FAIL for labels and for similarity, and overall (the worse of the two)."""
    labels = _band(summary.get("agreement"), limits.labels_pass, limits.labels_caution)
    text = _band(
        summary.get("response_similarity"), limits.similarity_pass, limits.similarity_caution
    )
    order = ["PASS", "CAUTION", "FAIL", "NO DATA"]
    overall = max(labels, text, key=order.index)
    return {"labels": labels, "similarity": text, "overall": overall}


def _band(value: float | None, passing: float, caution: float) -> str:
    if value is None:
        return "NO DATA"
    if value >= passing:
        return "PASS"
    return "CAUTION" if value >= caution else "FAIL"
