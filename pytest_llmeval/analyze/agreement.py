"""Backend agreement over a task: rates of the per-item comparisons (see
`pytest_llmeval.score.agreement`) with Wilson intervals, Cohen's kappa, mean similarities and
lengths, the reference backend's own speed figures and errors, and an assessment
(PASS / CAUTION / FAIL). Pure functions: no pytest, no backends.

Denominators: `agreement` and `finegrain_agreement` are over every item of the task x model
(an error on either side or an unparsed side is not agreement); the parse rates,
`agreement_answered` and the similarities are over the compared items (both sides answered);
kappa is over the items where both sides gave a label, because an unparsed answer is not a
rating (it is counted in the parse rates and as a disagreement in `agreement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_llmeval.analyze.metrics import AgreementThresholds, Assessment, Band
from pytest_llmeval.analyze.performance import total_tokens
from pytest_llmeval.analyze.record import Comparison
from pytest_llmeval.analyze.stats import cohens_kappa, mean, percentile, wilson_interval

# The count each agreement metric is computed over (a gate on the metric reports it as n).
METRIC_N = {
    "agreement": "n",
    "finegrain_agreement": "n",
    "agreement_answered": "compared",
    "both_parse_rate": "compared",
    "reference_accuracy": "compared",
    "kappa": "kappa_n",
    "finegrain_kappa": "kappa_n",
    "response_indel_similarity": "response_indel_similarity_n",
    "reasoning_indel_similarity": "reasoning_indel_similarity_n",
}


def summarize_agreement(
    comparisons: Sequence[Comparison],
    thresholds: AgreementThresholds | None = None,
    uncompared: int = 0,
) -> dict[str, Any]:
    """The agreement fields of `Metrics` over a task x model's comparisons.

    `comparisons` holds every item that has one (a failed reference included, with its
    `reference_error`); `uncompared` counts the task x model's items that errored before
    a comparison existed (the primary's or the data's errors): they count as not agreeing.
    """
    limits = thresholds or AgreementThresholds()
    answered = [c for c in comparisons if c.reference_error is None]
    total = len(comparisons) + uncompared
    n = len(answered)
    labelled = [c for c in answered if c.both_parsed]

    def share(hits: int, of: int) -> float | None:
        return hits / of if of else None

    def interval(hits: int, of: int) -> list[float] | None:
        return list(wilson_interval(hits, of)) if of else None

    def count(field: str) -> int:
        return sum(1 for c in answered if getattr(c, field))

    def defined(field: str) -> list[float]:
        return [float(v) for c in answered if (v := getattr(c, field)) is not None]

    agree, fine, both = count("binary_match"), count("finegrain_match"), count("both_parsed")
    response, reasoning = (
        defined("response_indel_similarity"),
        defined("reasoning_indel_similarity"),
    )
    summary: dict[str, Any] = {
        "agreement": share(agree, total),
        "agreement_ci95": interval(agree, total),
        "agreement_answered": share(agree, n),
        "finegrain_agreement": share(fine, total),
        "finegrain_agreement_ci95": interval(fine, total),
        "kappa": cohens_kappa([_binary_pair(c) for c in labelled]),
        "finegrain_kappa": cohens_kappa([_label_pair(c) for c in labelled]),
        "kappa_n": len(labelled),
        "compared": n,
        "reference_errors": len(comparisons) - n,
        "primary_parse_rate": share(count("primary_parsed"), n),
        "reference_parse_rate": share(count("reference_parsed"), n),
        "both_parse_rate": share(both, n),
        "both_parse_rate_ci95": interval(both, n),
        "response_indel_similarity": mean(response),
        "response_indel_similarity_n": len(response),
        "reasoning_indel_similarity": mean(reasoning),
        "reasoning_indel_similarity_n": len(reasoning),
        "primary_response_chars": mean(defined("primary_response_chars")),
        "reference_response_chars": mean(defined("reference_response_chars")),
        "primary_reasoning_chars": mean(defined("primary_reasoning_chars")),
        "reference_reasoning_chars": mean(defined("reference_reasoning_chars")),
        **reference_figures(answered),
        "reference_model": comparisons[0].reference_model if comparisons else None,
    }
    summary["assessment"] = assess(
        summary["agreement"], summary["response_indel_similarity"], limits
    )
    summary["thresholds"] = limits
    return summary


def reference_figures(answered: Sequence[Comparison]) -> dict[str, Any]:
    """The reference backend's own accuracy and speed, computed as the primary's are: latency
    percentiles and tok/s over the generations made in this run (cached ones are counted
    apart), tok/s over the summed wall time of their distinct batches."""
    # A pass rate, as the primary's `accuracy`: a partial score is not a fraction of a pass.
    correct = [c.reference_correct for c in answered if c.reference_correct is not None]
    hits = sum(1 for c in correct if c)
    generated = [c for c in answered if c.reference_cached is False]
    latencies = [
        float(c.reference_latency_s) for c in generated if c.reference_latency_s is not None
    ]
    walls = {c.reference_batch_id: float(c.reference_batch_wall_s or 0.0) for c in generated}
    seconds = sum(walls.values())
    # Token counts follow the primary's rule: None when the backend counts none.
    tokens_generated = total_tokens([c.reference_tokens_out for c in generated])
    return {
        "reference_accuracy": hits / len(correct) if correct else None,
        "reference_accuracy_ci95": list(wilson_interval(hits, len(correct))) if correct else None,
        "reference_latency_p50": percentile(latencies, 50),
        "reference_latency_p95": percentile(latencies, 95),
        # Over generations made in this run, as the primary's tokens_in/out.
        "reference_tokens_in": total_tokens([c.reference_tokens_in for c in generated]),
        "reference_tokens_out": tokens_generated,
        "reference_tokens_per_s": (
            tokens_generated / seconds if seconds > 0 and tokens_generated is not None else None
        ),
        "reference_cached": sum(1 for c in answered if c.reference_cached is True),
        "reference_generated": len(generated),
    }


def _binary_pair(comparison: Comparison) -> tuple[str, str]:
    return (
        comparison.primary_binary_label.casefold(),
        str(comparison.reference_binary_label).casefold(),
    )


def _label_pair(comparison: Comparison) -> tuple[str, str]:
    return (comparison.primary_label.casefold(), str(comparison.reference_label).casefold())


def assess(
    agreement: float | None, similarity: float | None, limits: AgreementThresholds
) -> Assessment:
    """PASS / CAUTION / FAIL for labels and for similarity, and overall (the worse of the two)."""
    labels = _band(agreement, limits.labels_pass, limits.labels_caution)
    text = _band(similarity, limits.indel_similarity_pass, limits.indel_similarity_caution)
    order: list[Band] = ["PASS", "CAUTION", "FAIL", "NO DATA"]
    overall = max(labels, text, key=order.index)
    return Assessment(labels=labels, indel_similarity=text, overall=overall)


def _band(value: float | None, passing: float, caution: float) -> Band:
    if value is None:
        return "NO DATA"
    if value >= passing:
        return "PASS"
    return "CAUTION" if value >= caution else "FAIL"
