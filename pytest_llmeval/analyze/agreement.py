"""Backend agreement over a task: rates of the per-item comparisons (see
`pytest_llmeval.score.agreement`) with Wilson intervals, mean similarities and lengths, and
an assessment (PASS / CAUTION / FAIL). Pure functions: no pytest, no backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pytest_llmeval.analyze.metrics import AgreementThresholds, Assessment, Band
from pytest_llmeval.analyze.record import Comparison
from pytest_llmeval.analyze.stats import mean, wilson_interval


def summarize_agreement(
    comparisons: Sequence[Comparison], thresholds: AgreementThresholds | None = None
) -> dict[str, Any]:
    """The agreement fields of `Metrics` over a task's compared items: rates with Wilson
    intervals, mean similarities and lengths, and the assessment."""
    limits = thresholds or AgreementThresholds()
    n = len(comparisons)
    rows = [asdict(c) for c in comparisons]

    def rate(field: str) -> float | None:
        return sum(1 for c in rows if c[field]) / n if n else None

    def interval(field: str) -> list[float] | None:
        hits = sum(1 for c in rows if c[field])
        return list(wilson_interval(hits, n)) if n else None

    def average(field: str) -> float | None:
        return mean([float(c[field]) for c in rows if c[field] is not None])

    summary: dict[str, Any] = {
        "agreement": rate("binary_match"),
        "agreement_ci95": interval("binary_match"),
        "finegrain_agreement": rate("finegrain_match"),
        "finegrain_agreement_ci95": interval("finegrain_match"),
        "primary_parse_rate": rate("primary_parsed"),
        "reference_parse_rate": rate("reference_parsed"),
        "both_parse_rate": rate("both_parsed"),
        "both_parse_rate_ci95": interval("both_parsed"),
        "response_similarity": average("response_similarity"),
        "reasoning_similarity": average("reasoning_similarity"),
        "primary_response_chars": average("primary_response_chars"),
        "reference_response_chars": average("reference_response_chars"),
        "primary_reasoning_chars": average("primary_reasoning_chars"),
        "reference_reasoning_chars": average("reference_reasoning_chars"),
    }
    summary["assessment"] = assess(summary["agreement"], summary["response_similarity"], limits)
    summary["thresholds"] = limits
    return summary


def assess(
    agreement: float | None, similarity: float | None, limits: AgreementThresholds
) -> Assessment:
    """PASS / CAUTION / FAIL for labels and for similarity, and overall (the worse of the two)."""
    labels = _band(agreement, limits.labels_pass, limits.labels_caution)
    text = _band(similarity, limits.similarity_pass, limits.similarity_caution)
    order: list[Band] = ["PASS", "CAUTION", "FAIL", "NO DATA"]
    overall = max(labels, text, key=order.index)
    return Assessment(labels=labels, similarity=text, overall=overall)


def _band(value: float | None, passing: float, caution: float) -> Band:
    if value is None:
        return "NO DATA"
    if value >= passing:
        return "PASS"
    return "CAUTION" if value >= caution else "FAIL"
