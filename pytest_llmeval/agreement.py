"""Backend agreement: the same items on a primary and a reference backend, compared.

Per item, each side's response is split into reasoning and final answer (`<think>` blocks,
gpt-oss harmony channels), a label is parsed from the answer, and the two sides are compared:
binary label match, fine-grained label match, parse success, response and reasoning similarity.
Per task the rates and means are summarised with an assessment (PASS / CAUTION / FAIL). Pure
functions: no pytest, no backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.scorers import INVALID, similarity, split_reasoning
from pytest_llmeval.stats import mean, wilson_interval

BinaryOf = Callable[[str], str]


@dataclass(frozen=True)
class Thresholds:
    """Assessment bands: at or above `*_pass` is PASS, at or above `*_caution` is CAUTION."""

    labels_pass: float = 0.95
    labels_caution: float = 0.90
    similarity_pass: float = 0.80
    similarity_caution: float = 0.60


def compare_item(
    primary: str,
    reference: str,
    primary_label: str | None,
    reference_label: str | None,
    binary_of: BinaryOf | None = None,
) -> dict[str, Any]:
    """The per-item comparison fields (plain JSON) for two responses and their parsed labels."""

    def to_binary(label: str) -> str:
        # An unparsable response is its own class on both scales.
        return label if label == INVALID or binary_of is None else binary_of(label)

    primary_label = primary_label or INVALID
    reference_label = reference_label or INVALID
    primary_reasoning, primary_answer = split_reasoning(primary)
    reference_reasoning, reference_answer = split_reasoning(reference)
    primary_parsed = _parsed(primary_label)
    reference_parsed = _parsed(reference_label)
    both = primary_parsed and reference_parsed
    return {
        "primary_label": primary_label,
        "reference_label": reference_label,
        "primary_parsed": primary_parsed,
        "reference_parsed": reference_parsed,
        "both_parsed": both,
        # Labels are compared as parsed, "[invalid]" included: two backends that both fail to
        # give a label behave alike; parse rates report that failure separately.
        "finegrain_match": _same(primary_label, reference_label),
        "binary_match": _same(to_binary(primary_label), to_binary(reference_label)),
        "response_similarity": round(similarity(primary_answer, reference_answer), 6),
        "reasoning_similarity": round(similarity(primary_reasoning, reference_reasoning), 6),
        "primary_response": primary_answer,
        "reference_response": reference_answer,
        "primary_reasoning": primary_reasoning,
        "reference_reasoning": reference_reasoning,
        "primary_response_chars": len(primary_answer),
        "reference_response_chars": len(reference_answer),
        "primary_reasoning_chars": len(primary_reasoning),
        "reference_reasoning_chars": len(reference_reasoning),
    }


def _parsed(label: str | None) -> bool:
    return label is not None and label != INVALID


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


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
