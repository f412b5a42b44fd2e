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
    """Agreement bands: labels and similarity, and overall (the worse of the two)."""

    __pydantic_config__ = SCHEMA_CONFIG

    labels: Band
    similarity: Band
    overall: Band


@dataclass(frozen=True)
class AgreementThresholds:
    """Assessment bands: at or above `*_pass` is PASS, at or above `*_caution` is CAUTION."""

    __pydantic_config__ = SCHEMA_CONFIG

    labels_pass: float = 0.95
    labels_caution: float = 0.90
    similarity_pass: float = 0.80
    similarity_caution: float = 0.60


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
    agreement: float | None = None
    """Agreement runs: share of items whose binary labels agree."""
    agreement_ci95: Interval = None
    finegrain_agreement: float | None = None
    finegrain_agreement_ci95: Interval = None
    primary_parse_rate: float | None = None
    reference_parse_rate: float | None = None
    both_parse_rate: float | None = None
    both_parse_rate_ci95: Interval = None
    response_similarity: float | None = None
    reasoning_similarity: float | None = None
    primary_response_chars: float | None = None
    reference_response_chars: float | None = None
    primary_reasoning_chars: float | None = None
    reference_reasoning_chars: float | None = None
    assessment: Assessment | None = None
    thresholds: AgreementThresholds | None = None
    reference_model: str | None = None
    reference_accuracy: float | None = None
    reference_accuracy_ci95: Interval = None


METRIC_FIELDS = frozenset(f.name for f in fields(Metrics))
"""Every metric name; each gateable metric (`analyze.gates.METRICS`) is one of them."""
