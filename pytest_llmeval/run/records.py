"""Building item records: every `ItemRecord` of a run is made by one of these functions.

An evaluated item, an item that errored, an item whose worker crashed or that never ran (both
built on the controller from the node id alone) and a hand-written test's generation. The
type itself is `pytest_llmeval.analyze.record.ItemRecord`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.analyze.plain import RecordValueError, plain_value
from pytest_llmeval.analyze.record import Comparison, ItemRecord, Label, Outcome
from pytest_llmeval.backends import GenerationResult
from pytest_llmeval.declare.ids import arm_parts, parse_nodeid
from pytest_llmeval.score.scorers import Score


@dataclass(frozen=True)
class ItemFacts:
    """What an item is, known before it runs."""

    id: str
    nodeid: str
    task: str
    model: str
    split: str
    row_index: int
    label: Any = None
    arm: str | None = None
    """The item's arm; None: the model's name."""
    variant: str | None = None


def evaluated(
    facts: ItemFacts,
    *,
    worker: str,
    target: str,
    generation: GenerationResult,
    score: Score,
    passed: bool,
    correct: bool,
    comparison: Comparison | None = None,
) -> ItemRecord:
    """The record of an item that was generated and scored; `correct` is whether the score
    reached the task's pass threshold, `passed` the test's outcome (in agreement runs: the
    labels agree). In an agreement run whose reference backend failed, an error that keeps
    the primary's generation and score."""
    error = None
    if comparison is not None and comparison.reference_error is not None:
        # The item could not be compared: an error, charged to the reference by its message.
        error = f"reference {comparison.reference_model} failed: {comparison.reference_error}"
    return ItemRecord(
        **_identity(facts),
        source="task",
        outcome="error" if error else "pass" if passed else "fail",
        error=error,
        worker=worker,
        target=target,
        reasoning=score.reasoning,
        extracted=score.extracted,
        method=score.method,
        span=score.span,
        score=float(score.value),
        correct=correct,
        comparison=comparison,
        # A copy: the record is coerced to JSON on the worker, the Score stays the scorer's.
        components=dict(score.components) if score.components else None,
        **_generation(generation),
    )


def errored(
    facts: ItemFacts,
    *,
    worker: str | None,
    target: str | None,
    error: str,
    components: Mapping[str, float | None] | None = None,
) -> ItemRecord:
    """The record of an item that could not be evaluated (`error` is the one-line message;
    `components`: `error_components` of its row, when it was read)."""
    return ItemRecord(
        **_identity(facts),
        source="task",
        outcome="error",
        error=error,
        worker=worker,
        target=target,
        components=dict(components) if components else None,
    )


def error_components(scorer: object, row: Mapping[str, Any]) -> dict[str, float | None] | None:
    """An errored item's components from its row: 0.0 where the scorer says a component
    applies (`scorer.applies(row) -> {name: bool}`), None where it does not, so the error is
    a miss exactly where an answer would have counted. None when the scorer cannot say (no
    `applies`, or it fails on this row): aggregation then falls back to its own rule."""
    applies = getattr(scorer, "applies", None)
    if not callable(applies):
        return None
    try:
        found = applies(row)
        return {str(name): 0.0 if bool(on) else None for name, on in dict(found).items()}
    except Exception:  # the item already has its error; this one would only hide it
        return None


def crashed(nodeid: str, error: str, models: str | Sequence[str], worker: str | None) -> ItemRecord:
    """The record of an eval item whose worker died while running it, from its node id
    (`error`: the one-line message, "worker crashed while ..."; `models`: the run's model
    names, or the first one)."""
    return _unfinished(nodeid, error, models, worker)


def not_run(nodeid: str, reason: str, models: str | Sequence[str]) -> ItemRecord:
    """The record of a selected eval item that never ran (`reason`: "not run: why")."""
    return _unfinished(nodeid, reason, models, None)


def _unfinished(
    nodeid: str, error: str, models: str | Sequence[str], worker: str | None
) -> ItemRecord:
    """An error record built on the controller from the node id alone: its bracket is the
    arm, read back into model and variant against the run's model names."""
    parsed = parse_nodeid(nodeid)
    if parsed is None:
        raise ValueError(f"not an eval item's node id: {nodeid!r}")
    names = [models] if isinstance(models, str) else list(models)
    arm = parsed.model or names[0]
    model, variant = arm_parts(arm, names)
    return ItemRecord(
        id=parsed.item_id,
        nodeid=nodeid,
        task=parsed.task,
        model=model,
        split=parsed.split,
        row_index=parsed.row,
        source="task",
        outcome="error",
        error=error,
        arm=arm,
        variant=variant,
        worker=worker,
    )


def compared(
    reference_model: str,
    generation: GenerationResult | None,
    score: Score | None,
    text: str,
    labels: Mapping[str, Any],
    error: str | None = None,
    pass_threshold: float = 1.0,
) -> Comparison:
    """The comparison part of an agreement run's record: the reference backend's own result
    (or its `error`, then `generation` and `score` are None) and the per-item comparison
    fields (`pytest_llmeval.score.agreement.compare_item`)."""
    return Comparison(
        reference_model=reference_model,
        reference_error=error,
        reference_raw_response=None if generation is None else generation.text,
        reference_extracted=None if score is None else score.extracted,
        reference_score=None if score is None else float(score.value),
        reference_correct=None if score is None else float(score.value) >= pass_threshold,
        text=text,
        **_reference_generation(generation),
        **labels,
    )


def _reference_generation(generation: GenerationResult | None) -> dict[str, Any]:
    """The reference generation's own facts as `reference_*` fields (all None without one)."""
    names = ("prompt", "finish_reason", "latency_s", "tokens_in", "tokens_out", "cached",
             "batch_id", "batch_size", "batch_wall_s")  # fmt: skip
    fields = {f"reference_{name}": getattr(generation, name, None) for name in names}
    if generation is not None and generation.cached:
        # As the primary's: a cached generation's timings belong to the run that made it.
        fields.update({f"reference_{name}": None for name in names if name in _NOT_THIS_RUN})
    return fields


def from_test(
    facts: ItemFacts,
    *,
    worker: str,
    outcome: Outcome,
    prompt: str | None,
    generation: GenerationResult | None,
    error: str | None = None,
) -> ItemRecord:
    """A generation made by a hand-written test: its outcome and score are the test's, or
    `error` when the generation itself failed (then there is no `generation`)."""
    if generation is None:
        return ItemRecord(
            **_identity(facts),
            source="test",
            outcome="error",
            error=error,
            worker=worker,
            prompt=prompt,
        )
    return ItemRecord(
        **_identity(facts),
        source="test",
        outcome=outcome,
        worker=worker,
        score={"pass": 1.0, "fail": 0.0}.get(outcome),
        correct={"pass": True, "fail": False}.get(outcome),
        **_generation(generation),
    )


def _identity(facts: ItemFacts) -> dict[str, Any]:
    return {
        "id": facts.id,
        "nodeid": facts.nodeid,
        "task": facts.task,
        "model": facts.model,
        "split": facts.split,
        "row_index": facts.row_index,
        "label": _json_label(facts.label),
        "arm": facts.arm or facts.model,
        "variant": facts.variant,
    }


def _json_label(value: Any) -> Label:
    """A row's label as a JSON scalar (numpy/pandas scalars from parquet or csv rows become
    Python; a value with no JSON form is kept as its repr rather than failing the item)."""
    try:
        converted: Label = plain_value(value, "label")
    except RecordValueError:
        return repr(value)
    return converted


# A cached generation's figures were measured by the run that generated it: this run's
# record leaves them out, so no report mistakes them for work done now.
_NOT_THIS_RUN = (
    "latency_s", "latency_method", "batch_id", "batch_size", "batch_wall_s", "energy_j",
    "cpu_energy_j", "energy_method", "batch_energy_j", "batch_avg_w", "batch_peak_w",
    "pad_tokens",
)  # fmt: skip
CACHED_REASON = "cached: no generation this run"


def _generation(generation: GenerationResult) -> dict[str, Any]:
    """The result's fields as record fields: the same names, except `text` is `response`;
    a cached result keeps its text and token counts but none of its first run's figures."""
    fields = dict(vars(generation))
    fields["response"] = fields.pop("text")
    fields.pop("mean_logprob")  # a candidate's fact: in `ItemRecord.samples`, for selectors
    if generation.cached:
        fields.update(dict.fromkeys(_NOT_THIS_RUN), energy_reason=CACHED_REASON)
    return fields
