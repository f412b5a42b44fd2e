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
    """Band of `agreement` under `thresholds.labels_*`; `NO DATA` when `agreement` is None."""
    indel_similarity: Band
    """Band of `response_indel_similarity` under `thresholds.indel_similarity_*`; `NO DATA` when
    it is None."""
    overall: Band
    """The worse of `labels` and `indel_similarity` (PASS, CAUTION, FAIL, NO DATA in that order)."""


@dataclass(frozen=True)
class AgreementThresholds:
    """Assessment bands: at or above `*_pass` is PASS, at or above `*_caution` is CAUTION."""

    __pydantic_config__ = SCHEMA_CONFIG

    labels_pass: float = 0.95
    """Band of `agreement`."""
    labels_caution: float = 0.90
    """`agreement` at or above this, but below `labels_pass`, is CAUTION; below it, FAIL."""
    indel_similarity_pass: float = 0.80
    """Band of `response_indel_similarity`. Not 0-based: unrelated English prose scores about
    0.4 (shared letters make a long common subsequence), two short answers of one template
    with different content about 0.6."""
    indel_similarity_caution: float = 0.60
    """`response_indel_similarity` at or above this, but below `indel_similarity_pass`, is
    CAUTION; below it, FAIL."""


@dataclass(frozen=True)
class LabelScores:
    """One label of a classification task: precision, recall and F1 with their 95% intervals
    (percentile bootstrap over items, 2,000 resamples, seed 0)."""

    __pydantic_config__ = SCHEMA_CONFIG

    precision: float | None
    """Items predicted this label whose target is this label / items predicted this label
    (`predicted`); None when nothing was predicted this label."""
    precision_ci95: Interval
    """95% percentile bootstrap interval of `precision`."""
    recall: float | None
    """Items whose target is this label and were predicted it / `support`; None without
    support. An errored item counts as a miss."""
    recall_ci95: Interval
    """95% percentile bootstrap interval of `recall`."""
    f1: float | None
    """2 x true positives / (`support` + `predicted`), the harmonic mean of precision and
    recall (0 when the label is never predicted right); None when the label is neither a
    target nor a prediction."""
    f1_ci95: Interval
    """95% percentile bootstrap interval of `f1`."""
    support: int
    """Items whose target is this label."""
    predicted: int
    """Items predicted this label (target known)."""


@dataclass
class Metrics:
    """One task x model: quality with 95% intervals, latency, throughput, energy, hardware,
    cost, and in agreement runs the comparison with the reference backend."""

    __pydantic_config__ = SCHEMA_CONFIG

    n: int
    """All selected items, errors included: the denominator of `accuracy` and every rate."""
    n_answered: int
    """Items with a primary score (`n` minus `n_errors`): the denominator of `*_answered`."""
    n_pass: int
    """Items whose test passed (in agreement runs: whose labels agree with the reference)."""
    n_correct: int
    """Items whose score reached the task's `pass_threshold` (the numerator of `accuracy`)."""
    n_errors: int
    """Items without a primary score (generation, data or scorer error)."""
    task_rows: int
    """Rows in the task before `--limit` or deselection."""
    partial: bool
    """Whether fewer items ran than the task has rows (`-k`, `--lf`, `--limit`)."""
    accuracy: float | None
    """Pass rate: `n_correct / n`, the share of all selected items whose score reached the
    task's `pass_threshold`; an errored item counts as not correct."""
    accuracy_ci95: Interval
    """Wilson 95% interval of `accuracy`."""
    accuracy_answered: float | None
    """`n_correct / n_answered`: the pass rate over the items that got a score."""
    accuracy_answered_ci95: Interval
    """Wilson 95% interval of `accuracy_answered`."""
    accuracy_strict: float | None
    """Numeric tasks: share of all selected items that are correct with a strict `#### n`
    answer (lm-evaluation-harness `strict-match`); `accuracy` is the flexible figure.
    None for tasks whose scorer reports no strict/flexible extraction."""
    accuracy_strict_ci95: Interval
    """Wilson 95% interval of `accuracy_strict`."""
    mean_score: float | None
    """Mean of the item scores (0..1, partial credit included) over all selected items; an
    errored item counts 0. Equals `accuracy` for all-or-nothing scorers."""
    mean_score_ci95: Interval
    """Student-t 95% interval of `mean_score`, clamped to [0, 1]; None for fewer than 2 items."""
    parse_rate: float | None
    """Share of all selected items whose answer could be extracted (an error is unparsed)."""
    parse_rate_ci95: Interval
    """Wilson 95% interval of `parse_rate`."""
    parse_rate_answered: float | None
    """Share of the items that got a score whose answer could be extracted."""
    parse_rate_answered_ci95: Interval
    """Wilson 95% interval of `parse_rate_answered`."""
    error_rate: float | None
    """`n_errors / n`."""
    error_rate_ci95: Interval
    """Wilson 95% interval of `error_rate`."""
    latency_p50: float | None
    """Seconds; median of the item latencies of the items generated in this run (items that
    only have their batch's wall time, `latency_method` "batch wall time: ...", left out)."""
    latency_p95: float | None
    """Seconds; 95th percentile (linear interpolation) of the same latencies."""
    latency_method: str | None
    """How the backend measured an item's latency, and how many items with only their batch's
    wall time the percentiles leave out."""
    tokens_in: int | None
    """Prompt tokens of the items generated in this run (0 when none was); None when the
    backend does not count tokens."""
    tokens_out: int | None
    """Generated tokens of the items generated in this run, the end-of-sequence token not
    counted (0 when none was); None when the backend does not count tokens."""
    padding_share: float | None
    """Share (0..1) of the prompt tokens fed to the model that were padding, over the items
    generated in this run whose backend pads batches: sum of `pad_tokens` / (sum of
    `tokens_in` + sum of `pad_tokens`). None when no such item was generated (all cached, or a
    backend that does not pad: vllm, openai, callable)."""
    generation_s: float
    """Seconds: summed wall time of the distinct batches of this run that generated this
    task x model's items."""
    batches: int
    """Distinct generation batches of this run."""
    tokens_per_s: float | None
    """`tokens_out / generation_s`; None with `speed_reason` when nothing was generated or
    tokens were not counted."""
    items_per_min: float | None
    """Items generated in this run per minute of `generation_s`."""
    speed_reason: str | None
    """Why `tokens_per_s` (and, when nothing was generated, the latencies and
    `items_per_min`) is None: all items cached, nothing generated, or no token counts."""
    cached: int
    """Items served from the generation cache: no model work, energy or cost this run, and
    left out of every speed and energy figure."""
    generated: int
    """Items generated in this run."""
    energy_wh: float | None
    """GPU energy (Wh) of the distinct batches of this run; None with `energy_reason` when
    not measured or when nothing was generated."""
    energy_reason: str | None
    """Why `energy_wh` is None: all items cached, nothing generated, or why the meter gave no
    reading (no GPU energy source, window too short, ...); None when measured."""
    energy_method: str | None
    """How the GPU energy was measured and split over the items (the `energy_method` of the items
    generated in this run); None when nothing was measured."""
    j_per_token: float | None
    """GPU joules per generated token (`tokens_out`) of this run."""
    avg_power_w: float | None
    """Watts: average GPU power over this run's batches, their energy (`energy_wh` in J) /
    `generation_s`; None when `energy_wh` is None."""
    peak_power_w: float | None
    """Watts: the highest `batch_peak_w` of this run's batches (sampled GPU power); None when the
    meter reads an energy counter (no samples), measured nothing, or nothing was generated."""
    cpu_energy_wh: float | None
    """CPU package energy (Wh, RAPL; per worker its equal share of the package) of the items
    generated in this run, the sum of their `cpu_energy_j`; None when any is unmeasured or
    nothing was generated."""
    load_time_s: float | None = None
    """Longest model load of this model over the workers that ran it."""
    model_loads: int = 0
    """Loads of this model's weights, summed over the run's processes (0: every item came from
    the cache, or an API model); per model, so the same for each of its tasks."""
    model_size_gb: float | None = None
    """GB (1e9 bytes) of the model's weight files on disk, the largest any process reported; None
    when unknown (API backends)."""
    peak_vram_gb: float | None = None
    """GB (1e9 bytes): the largest peak GPU memory allocated by one process that ran this model
    (`torch.cuda.max_memory_allocated`, whole process, all its tasks); None on the CPU and for
    API backends."""
    cost_usd: float | None = None
    """Estimated API cost (USD, price table) of the items generated in this run: a cached
    item costs nothing now. None with `cost_reason` when unpriced or tokens uncounted."""
    cost_reason: str | None = None
    """Why `cost_usd` is None: a local model (see the energy fields), a callable pipeline, no
    price for the API model, or tokens not counted; None when priced."""
    # Agreement runs (--compare-backend) only; None otherwise.
    agreement: float | None = None
    """Agreement runs: share of all items (`n`) whose binary labels agree: both
    sides gave a label and the labels' binary classes are equal. An unparsed side, or an
    error on either side, counts as not agreeing."""
    agreement_ci95: Interval = None
    """Wilson 95% interval of `agreement`."""
    agreement_answered: float | None = None
    """Share of the compared items (`compared`: both sides answered) whose binary labels
    agree; an unparsed side still counts as not agreeing."""
    finegrain_agreement: float | None = None
    """As `agreement`, with the fine-grained labels themselves (case-insensitive)."""
    finegrain_agreement_ci95: Interval = None
    """Wilson 95% interval of `finegrain_agreement`."""
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
    """Share of the compared items where the reference gave one of the task's labels."""
    both_parse_rate: float | None = None
    """Share of the compared items where both sides gave a label."""
    both_parse_rate_ci95: Interval = None
    """Wilson 95% interval of `both_parse_rate`."""
    response_indel_similarity: float | None = None
    """Mean normalized Indel similarity (`rapidfuzz.fuzz.ratio / 100`: 2 x longest common
    character subsequence / total length, 0..1) of the two final answers, over the compared
    items where at least one answer is non-empty (`response_indel_similarity_n`)."""
    response_indel_similarity_n: int | None = None
    """Compared items where at least one final answer is non-empty: the n of
    `response_indel_similarity`."""
    reasoning_indel_similarity: float | None = None
    """Mean normalized Indel similarity of the two reasonings over the items where both
    sides reasoned (`reasoning_indel_similarity_n`); None when there are none."""
    reasoning_indel_similarity_n: int | None = None
    """Compared items where both sides reasoned: the n of `reasoning_indel_similarity`."""
    primary_response_chars: float | None = None
    """Mean length in characters of the primary's final answers (compared items)."""
    reference_response_chars: float | None = None
    """Mean length in characters of the reference's final answers (compared items)."""
    primary_reasoning_chars: float | None = None
    """Mean length in characters of the primary's reasoning (compared items; 0 for an item
    without reasoning)."""
    reference_reasoning_chars: float | None = None
    """Mean length in characters of the reference's reasoning (compared items; 0 for an item
    without reasoning)."""
    assessment: Assessment | None = None
    """Agreement runs: PASS / CAUTION / FAIL bands of `agreement` and `response_indel_similarity`
    under `thresholds`."""
    thresholds: AgreementThresholds | None = None
    """Agreement runs: the band limits `assessment` was computed with."""
    reference_model: str | None = None
    """Name of the reference model (`--compare-backend` or the task's `reference`)."""
    reference_accuracy: float | None = None
    """Pass rate of the reference: share of the compared items (the reference answered) whose
    reference score reached the task's `pass_threshold`."""
    reference_accuracy_ci95: Interval = None
    """Wilson 95% interval of `reference_accuracy`."""
    reference_latency_p50: float | None = None
    """Median latency in seconds of the reference generations made in this run (cached
    ones excluded), each its own latency as for `latency_p50`."""
    reference_latency_p95: float | None = None
    """Seconds; 95th percentile (linear interpolation) of the same reference latencies as
    `reference_latency_p50`."""
    reference_tokens_in: int | None = None
    """Prompt tokens of the reference generations made in this run (cached ones excluded);
    None when its backend does not count tokens."""
    reference_tokens_out: int | None = None
    """Tokens the reference generated in this run (cached generations excluded), the
    end-of-sequence token not counted; None when its backend does not count tokens."""
    reference_tokens_per_s: float | None = None
    """Reference tokens generated in this run / summed wall time of their distinct batches."""
    reference_cached: int | None = None
    """Reference generations served from the generation cache."""
    reference_generated: int | None = None
    """Reference generations made in this run."""
    # Batch-invariance check (--llmeval-invariance-check N) only; None otherwise.
    invariance_checked: int | None = None
    """Items of the `--llmeval-invariance-check` sample generated again alone (batch size 1,
    uncached) and scored: the n of the other `invariance_*` metrics (check errors excluded)."""
    invariance_changed: int | None = None
    """Checked items whose unbatched response differs from the batched (or cached) one."""
    invariance_score_changed: int | None = None
    """Checked items whose unbatched score differs from the batched score (all-or-nothing
    scorers: whose correctness flipped)."""
    invariance_accuracy_delta: float | None = None
    """Unbatched minus batched accuracy over the checked items: (unbatched correct - batched
    correct) / `invariance_checked`; positive when batching cost accuracy."""
    invariance_errors: int | None = None
    """Items of the sample whose unbatched generation or scoring failed (not checked)."""
    # Against a saved run (--llmeval-baseline PATH) only; None otherwise (saved_baseline.py).
    baseline_run: str | None = None
    """The saved run this task x arm was compared with (its folder)."""
    baseline_reason: str | None = None
    """Why there is no comparison with the saved run (it has no matching arm); None when
    compared."""
    baseline_arm: str | None = None
    """The saved run's arm it was paired with (the same name, or the saved run's only arm)."""
    baseline_n: int | None = None
    """Items both this run and the saved run have (paired): the n of the figures below."""
    baseline_lacks: int | None = None
    """Items of this run the saved run lacks (not paired, not in the figures)."""
    baseline_only: int | None = None
    """Items only the saved run has (not paired, not in the figures)."""
    baseline_accuracy: float | None = None
    """The saved run's accuracy on the paired items."""
    baseline_delta: float | None = None
    """This run's accuracy minus the saved run's on the paired items (gate: `baseline_delta`)."""
    baseline_delta_ci95: Interval = None
    """Newcombe's paired 95% interval (method 10) of `baseline_delta`."""
    baseline_p_value: float | None = None
    """Exact McNemar p-value of "as accurate as the saved run" on the paired items."""
    regression: float | None = None
    """The largest accuracy drop the 95% interval allows: minus the lower bound of
    `baseline_delta_ci95` (a share; negative when the interval shows an improvement). Gate:
    `regression<=0.02` holds when any drop is below 2 points at 95% confidence."""
    baseline_wins: int | None = None
    """Paired items right here and wrong in the saved run."""
    baseline_losses: int | None = None
    """Paired items wrong here and right in the saved run."""
    # Sampled tasks (Generation.n > 1, --llmeval-samples) only; None otherwise. An item that
    # errored counts as n wrong candidates, as an error counts in `accuracy`.
    samples_n: int | None = None
    """Candidates drawn per item (the `n` of `mean@n`, `maj@n`, `oracle@n`)."""
    mean_at_n: float | None = None
    """`mean@n`: the expected accuracy of one random candidate, correct candidates / all
    candidates over the items (gate: `mean@5`)."""
    mean_at_n_ci95: Interval = None
    """95% interval of `mean_at_n`, cluster-robust with items as clusters (candidates of one
    item are not independent): normal, with the G/(G-1) small-sample factor."""
    maj_at_n: float | None = None
    """`maj@n`: share of items whose majority answer is correct (unparsed candidates do not
    vote; a tie goes to the answer whose first vote came earliest in sample order)."""
    maj_at_n_ci95: Interval = None
    """95% percentile bootstrap interval of `maj_at_n` over items (2,000 resamples, seed 0)."""
    oracle_at_n: float | None = None
    """`oracle@n` (= `pass@n`): share of items with at least one correct candidate."""
    oracle_at_n_ci95: Interval = None
    """95% percentile bootstrap interval of `oracle_at_n` over items."""
    pass_at_k: dict[str, float] | None = None
    """`pass@k` for k = 1..n: the mean over items of the unbiased estimator of Chen et al.
    (2021), 1 - C(n-c, k) / C(n, k) with c correct of n candidates (gate: `pass@2`)."""
    pass_at_k_ci95: dict[str, list[float]] | None = None
    """95% percentile bootstrap interval over items of each `pass_at_k`."""
    rerank_at_n: float | None = None
    """`rerank@n`: share of items whose selected candidate (`Task(select=...)`) is correct;
    None without a selector."""
    rerank_at_n_ci95: Interval = None
    """95% percentile bootstrap interval of `rerank_at_n` over items."""
    self_consistency: float | None = None
    """Mean over items (with a majority) of the share of candidates agreeing with the
    majority answer."""
    # Score components, task-level metrics, label metrics and composites
    # (analyze/task_metrics.py): every interval a 95% percentile bootstrap over items, 2,000
    # resamples, seed 0, one shared set of resamples per task x arm. Gate by name.
    components: dict[str, float | None] | None = None
    """Per score component (`Score.components`, e.g. `value_accuracy`): its mean over the items
    it applies to (not None). An errored item counts 0 in a component that applies to its row
    (its record's `components`, when the scorer says which apply: `scorer.applies(row)`);
    without that, 0 in a component every scored item has, and left out of one some scored
    items mark N/A. None: the scorer returns no components; a component's value None: no item
    it applies to (undefined, not 0)."""
    components_ci95: dict[str, list[float] | None] | None = None
    """95% percentile bootstrap interval (items resampled) of each component."""
    components_n: dict[str, int] | None = None
    """Items each component applies to: the n of its mean."""
    task_metrics: dict[str, float | None] | None = None
    """The task's declared metrics (`Task(metrics=...)`: recall, precision, F1 of a label,
    macro-F1) over each record's target vs extracted answer; None for an undefined one (e.g.
    recall of a label no target has)."""
    task_metrics_ci95: dict[str, list[float] | None] | None = None
    """95% percentile bootstrap interval of each task metric."""
    task_metrics_n: dict[str, int] | None = None
    """Items each task metric is computed over (recall: targets of the label; precision: items
    predicted it; F1: either; macro-F1: items with a known target)."""
    task_metrics_reason: dict[str, str] | None = None
    """Why a task metric is None though defined: its name is already a score component's or a
    label metric's, which keeps the name (a saved run's declaration; new declarations refuse
    it). None when no task metric has such a reason."""
    composites: dict[str, float | None] | None = None
    """The task's weighted composites (`Task(composites=...)`): the weighted sum of their
    parts' values; None when a part is undefined or unknown, or its name is already a
    component's, label metric's or task metric's (`composites_reason`)."""
    composites_ci95: dict[str, list[float] | None] | None = None
    """95% percentile bootstrap interval of each composite, every part recomputed on each
    resample."""
    composites_reason: dict[str, str] | None = None
    """Why a composite is None (an undefined part, an unknown name, a name already taken by a
    component, label metric or task metric); composites with a value are not listed."""
    label_metrics: dict[str, LabelScores] | None = None
    """Classification tasks (a scorer with labels): precision, recall, F1 per label (gates:
    `precision_<label>`, `recall_<label>`, `f1_<label>`, the label's non-word characters as
    `_`)."""
    macro_f1: float | None = None
    """Classification tasks: the mean of the per-label F1 over the labels with one (a target or
    a prediction); `[invalid]` answers are no label of their own."""
    macro_f1_ci95: Interval = None
    """95% percentile bootstrap interval of `macro_f1`."""
    confusion: dict[str, dict[str, int]] | None = None
    """Classification tasks: target label -> predicted label -> items; the predicted labels
    include `[invalid]` (no label found) and `[error]` (the item errored). Items whose target
    is unknown are left out."""


METRIC_FIELDS = frozenset(f.name for f in fields(Metrics))
"""Every metric name; each gateable metric (`analyze.gates.METRICS`) is one of them."""
