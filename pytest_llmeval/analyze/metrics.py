"""The metrics of one task x model, defined once: what aggregation computes, gates check and
the report, summaries and saved-run tools read.

Flat by design: a gate names a metric by its field name (`accuracy`, `agreement`), and a
proportion's 95% interval is the field of the same name with `_ci95` appended. Fields that
do not apply (agreement metrics outside agreement runs, energy without a meter) are None.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from pytest_llmeval.analyze.record import SCHEMA_CONFIG

Interval = list[float] | None
Band = Literal["PASS", "CAUTION", "FAIL", "NO DATA"]


@dataclass(frozen=True)
class Assessment:
    """Agreement bands: labels (`agreement`), response similarity
    (`response_indel_similarity`), and overall (the worse of the two)."""

    __pydantic_config__ = SCHEMA_CONFIG

    labels: Band
    indel_similarity: Band
    overall: Band


@dataclass(frozen=True)
class AgreementThresholds:
    """Assessment bands: at or above `*_pass` is PASS, at or above `*_caution` is CAUTION."""

    __pydantic_config__ = SCHEMA_CONFIG

    labels_pass: float = 0.95
    """Band of `agreement`."""
    labels_caution: float = 0.90
    indel_similarity_pass: float = 0.80
    """Band of `response_indel_similarity`. Not 0-based: unrelated English prose scores about
    0.4 (shared letters make a long common subsequence), two short answers of one template
    with different content about 0.6."""
    indel_similarity_caution: float = 0.60


@dataclass
class Metrics:
    """One task x model: quality with 95% intervals, latency, throughput, energy, hardware,
    cost, and in agreement runs the comparison with the reference backend."""

    __pydantic_config__ = SCHEMA_CONFIG

    n: int
    """Scored items (pass or fail); errors are counted apart."""
    n_total: int
    """All items, errors included."""
    n_pass: int
    n_errors: int
    task_rows: int
    """Rows in the task before `--limit` or deselection."""
    partial: bool
    """Whether fewer items ran than the task has rows (`-k`, `--lf`, `--limit`)."""
    accuracy: float | None
    """Mean score over the scored items."""
    accuracy_ci95: Interval
    """Wilson 95% interval of the accuracy."""
    parse_rate: float | None
    """Share of scored items whose answer could be extracted."""
    parse_rate_ci95: Interval
    error_rate: float | None
    """Share of all items that errored."""
    error_rate_ci95: Interval
    latency_p50: float | None
    latency_p95: float | None
    latency_method: str | None
    tokens_in: int
    tokens_out: int
    generation_s: float
    """Summed wall time of the distinct batches that generated this task x model's items."""
    batches: int
    tokens_per_s: float | None
    items_per_min: float | None
    cached: int
    """Items served from the generation cache."""
    generated: int
    """Items generated in this run."""
    energy_wh: float | None
    """GPU energy of the distinct batches; None with `energy_reason` when not measured."""
    energy_reason: str | None
    energy_method: str | None
    j_per_token: float | None
    avg_power_w: float | None
    peak_power_w: float | None
    cpu_energy_wh: float | None
    load_time_s: float | None = None
    """Longest model load of this model over the workers that ran it."""
    model_loads: int = 0
    model_size_gb: float | None = None
    peak_vram_gb: float | None = None
    cost_usd: float | None = None
    """Estimated API cost from the price table; None with `cost_reason` otherwise."""
    cost_reason: str | None = None
    # Agreement runs (--compare-backend) only; None otherwise.
    agreement: float | None = None
    """Agreement runs: share of all items (n = `n_total`) whose binary labels agree: both
    sides gave a label and the labels' binary classes are equal. An unparsed side, or an
    error on either side, counts as not agreeing."""
    agreement_ci95: Interval = None
    agreement_answered: float | None = None
    """Share of the compared items (`compared`: both sides answered) whose binary labels
    agree; an unparsed side still counts as not agreeing."""
    finegrain_agreement: float | None = None
    """As `agreement`, with the fine-grained labels themselves (case-insensitive)."""
    finegrain_agreement_ci95: Interval = None
    kappa: float | None = None
    """Cohen's kappa of the binary labels over the items where both sides gave a label
    (`kappa_n`): (p_o - p_e) / (1 - p_e), the observed agreement corrected by the agreement
    expected by chance from each side's label frequencies (1 perfect, 0 chance level). None
    without such items or when p_e is 1 (both sides always give the same one label)."""
    finegrain_kappa: float | None = None
    """As `kappa`, over the fine-grained labels."""
    kappa_n: int | None = None
    """Items where both sides gave a label: the n of `kappa` and `finegrain_kappa`."""
    compared: int | None = None
    """Items both backends answered (no error on either side): the n of the parse rates."""
    reference_errors: int | None = None
    """Items whose reference generation failed (errors, not charged to `n_errors`)."""
    primary_parse_rate: float | None = None
    """Share of the compared items where the primary gave one of the task's labels."""
    reference_parse_rate: float | None = None
    both_parse_rate: float | None = None
    """Share of the compared items where both sides gave a label."""
    both_parse_rate_ci95: Interval = None
    response_indel_similarity: float | None = None
    """Mean normalized Indel similarity (`rapidfuzz.fuzz.ratio / 100`: 2 x longest common
    character subsequence / total length, 0..1) of the two final answers, over the compared
    items where at least one answer is non-empty (`response_indel_similarity_n`)."""
    response_indel_similarity_n: int | None = None
    reasoning_indel_similarity: float | None = None
    """Mean normalized Indel similarity of the two reasonings over the items where both
    sides reasoned (`reasoning_indel_similarity_n`); None when there are none."""
    reasoning_indel_similarity_n: int | None = None
    primary_response_chars: float | None = None
    """Mean length in characters of the primary's final answers (compared items)."""
    reference_response_chars: float | None = None
    primary_reasoning_chars: float | None = None
    reference_reasoning_chars: float | None = None
    assessment: Assessment | None = None
    thresholds: AgreementThresholds | None = None
    reference_model: str | None = None
    reference_accuracy: float | None = None
    """Mean score of the reference's answers against the ground truth, over the items the
    reference answered."""
    reference_accuracy_ci95: Interval = None
    reference_latency_p50: float | None = None
    """Median latency in seconds of the reference generations made in this run (cached
    ones excluded), each its own latency as for `latency_p50`."""
    reference_latency_p95: float | None = None
    reference_tokens_in: int | None = None
    """Prompt tokens of all the reference's answers (cached included)."""
    reference_tokens_out: int | None = None
    reference_tokens_per_s: float | None = None
    """Reference tokens generated in this run / summed wall time of their distinct batches."""
    reference_cached: int | None = None
    """Reference generations served from the generation cache."""
    reference_generated: int | None = None
    """Reference generations made in this run."""


METRIC_FIELDS = frozenset(f.name for f in fields(Metrics))
"""Every metric name; each gateable metric (`analyze.gates.METRICS`) is one of them."""
