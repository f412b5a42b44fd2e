"""Comparison gates: `delta_low(patched)>=-0.02` checked on a task's arm comparisons.

Parsed with every gate (`pytest_llmeval.analyze.gates.parse_gate`: a metric with a candidate
arm in parentheses) and overridden the same way (task < ini < cli, per metric and arm); checked
here, on the controller, against the `ArmComparison` of that arm with the baseline arm. A
gate that cannot be evaluated fails with its reason instead of passing: the task ran one arm
only ("needs two arms"), the named arm did not run the task, or it is the baseline itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_llmeval.analyze.compare import ArmComparison
from pytest_llmeval.analyze.gates import (
    COMPARISON_METRICS,
    Gate,
    GateResult,
    effective_gates,
    parse_gate,
)


def comparison_value(comparison: ArmComparison, metric: str) -> float | None:
    """The value a comparison gate on `metric` reads (None: no data, the gate fails)."""
    field, _ = COMPARISON_METRICS[metric]
    value = getattr(comparison, field)
    if isinstance(value, list):  # an interval: `*_low` reads its lower bound, `*_high` its upper
        return float(value[0] if metric.endswith("_low") else value[1])
    return None if value is None else float(value)


def check_comparison(
    gate: Gate, task: str, comparison: ArmComparison, partial: bool = False
) -> GateResult:
    """One comparison gate against the comparison of its arm with the baseline."""
    _, interval_field = COMPARISON_METRICS[gate.metric]
    interval = getattr(comparison, interval_field) if interval_field else None
    value = comparison_value(comparison, gate.metric)
    return GateResult(
        gate=gate,
        task=task,
        model=comparison.candidate,
        value=value,
        n=comparison.score_n if gate.metric.startswith("score_") else comparison.n,
        interval=(interval[0], interval[1]) if interval else None,
        partial=partial,
        passed=value is not None and gate.holds(value),
        baseline=comparison.baseline,
    )


def _unevaluated(gate: Gate, task: str, baseline: str, reason: str) -> GateResult:
    """A comparison gate with nothing to read: failed, with the reason."""
    arm = gate.arm or "-"
    return GateResult(gate, task, arm, None, 0, None, False, False, reason, baseline)


def check_comparisons(
    comparisons: Sequence[ArmComparison],
    arms: Mapping[str, Sequence[str]],
    baseline: str | Mapping[str, str],
    declared: Mapping[str, Sequence[str] | None],
    overrides: Sequence[Gate],
    partial: Mapping[str, bool] | None = None,
) -> list[GateResult]:
    """Check the comparison gates of every task that ran (`arms`: task -> the arms that ran
    it); `baseline` is the baseline arm, or task -> its baseline arm; `declared` maps a task
    to the gates it declares, `partial` says which tasks ran a partial selection. Tasks that
    ran no items are `gates.check_run`'s."""
    by_key = {(c.task, c.candidate): c for c in comparisons}
    results = []
    baselines = baseline
    for task, ran in arms.items():
        baseline = baselines if isinstance(baselines, str) else baselines.get(task, ran[0])
        own = [parse_gate(text, "task", task) for text in declared.get(task) or []]
        for gate in effective_gates(task, own, overrides):
            if gate.arm is None:
                continue
            comparison = by_key.get((task, gate.arm))
            if comparison is not None:
                is_partial = (partial or {}).get(task, False)
                results.append(check_comparison(gate, task, comparison, is_partial))
                continue
            listed = ", ".join(ran)
            if len(ran) < 2:
                reason = f"needs two arms: task {task} ran only {listed}"
            elif gate.arm == baseline:
                reason = f"arm {gate.arm} is the baseline; name a candidate arm ({listed})"
            elif baseline not in ran:
                reason = f"the baseline arm {baseline} did not run task {task} (arms: {listed})"
            else:
                reason = f"arm {gate.arm} did not run task {task} (arms: {listed})"
            results.append(_unevaluated(gate, task, baseline, reason))
    return results
