"""Aggregate gates: `accuracy >= 0.6` declared on a task, in ini, or on the command line.

A gate is checked on the controller over all selected items of one task x model. Command-line
gates override ini gates, which override the task's own, metric by metric; a gate without a
task prefix applies to every task.

A comparison gate names a candidate arm in parentheses and reads that arm's comparison with
the baseline arm (`pytest_llmeval.analyze.compare`): `delta_low(patched)>=-0.02` (not worse
by more than 2 points at 95% confidence), `p_value(cot)<0.05`; it is checked in
`pytest_llmeval.analyze.compare_gates`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_llmeval.analyze.agreement import METRIC_N
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import SCHEMA_CONFIG
from pytest_llmeval.analyze.sampling_gates import is_sampled_metric, sampled_value
from pytest_llmeval.analyze.task_gates import task_value

# Metric name -> whether it has a 95% interval (the `<metric>_ci95` field of `Metrics`).
METRICS: dict[str, bool] = {
    "accuracy": True,
    "accuracy_answered": True,
    "accuracy_strict": True,
    "mean_score": True,
    "parse_rate": True,
    "parse_rate_answered": True,
    "error_rate": True,
    "n": False,
    "latency_p50": False,
    "latency_p95": False,
    "tokens_per_s": False,
    # Agreement runs (--compare-backend):
    "agreement": True,
    "agreement_answered": False,
    "finegrain_agreement": True,
    "kappa": False,
    "finegrain_kappa": False,
    "reference_accuracy": True,
    "both_parse_rate": True,
    "response_indel_similarity": False,
    "reasoning_indel_similarity": False,
    # Against a saved run (--llmeval-baseline PATH):
    "regression": False,
    "baseline_delta": True,
    "baseline_p_value": False,
    # Sampled tasks (Generation.n > 1); best-of-n names like `maj@5`: sampling_gates.py.
    "self_consistency": False,
    # Batch-invariance check (--llmeval-invariance-check N):
    "invariance_changed": False,
    "invariance_score_changed": False,
    "invariance_accuracy_delta": False,
}
BASELINE_METRICS = ("regression", "baseline_delta", "baseline_p_value")
"""The metrics read from the comparison with a saved run (`--llmeval-baseline`)."""
# Comparison gates, `metric(arm) op value`: metric -> the `ArmComparison` field it reads and
# the field holding the interval shown with it (None: no interval).
COMPARISON_METRICS: dict[str, tuple[str, str | None]] = {
    "delta": ("delta", "delta_ci95"),
    "delta_low": ("delta_ci95", "delta_ci95"),
    "delta_high": ("delta_ci95", "delta_ci95"),
    "p_value": ("p_value", None),
    "p_value_mcnemar": ("p_value_mcnemar", None),
    "wins": ("wins", None),
    "losses": ("losses", None),
    "latency_delta_p50": ("latency_delta_p50", None),
    "score_delta": ("score_delta", "score_delta_ci95"),
    "score_delta_low": ("score_delta_ci95", "score_delta_ci95"),
    "score_delta_high": ("score_delta_ci95", "score_delta_ci95"),
    "score_p_value": ("score_p_value", None),
}
# The count a metric is computed over, when it is not `n` (all selected items).
DENOMINATORS: dict[str, str] = {
    "regression": "baseline_n",
    "baseline_delta": "baseline_n",
    "baseline_p_value": "baseline_n",
    "accuracy_answered": "n_answered",
    "parse_rate_answered": "n_answered",
    "invariance_changed": "invariance_checked",
    "invariance_score_changed": "invariance_checked",
    "invariance_accuracy_delta": "invariance_checked",
    **METRIC_N,
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
# An optional `(arm)` after the metric makes it a comparison gate; an arm name may hold
# colons (`callable:pkg.mod:fn`) but no parentheses.
_GATE = re.compile(
    r"^\s*(?:(?P<task>[\w.\-*]+)\s*:)?\s*(?P<metric>\w+(?:@\d+)?)\s*(?:\(\s*(?P<arm>[^()]*?)\s*\)\s*)?(?P<op>>=|<=|==|>|<)\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*$"
)


class GateError(ValueError):
    """A gate string cannot be parsed; the message shows the expected form."""


@dataclass(frozen=True)
class Gate:
    """A parsed gate: `threshold` compared with `metric` of `task` by `op`; with `arm`, a
    comparison gate on that candidate arm's comparison with the baseline arm."""

    task: str  # "*" for every task
    metric: str
    op: str
    threshold: float
    origin: str  # "task", "ini" or "cli"
    arm: str | None = None

    @property
    def text(self) -> str:
        """The gate as written, without its task: `accuracy>=0.6`, `delta_low(b)>=-0.02`."""
        metric = self.metric if self.arm is None else f"{self.metric}({self.arm})"
        return f"{metric}{self.op}{self.threshold:g}"

    def holds(self, value: float) -> bool:
        """Whether `value` satisfies the gate."""
        return _OPS[self.op](value, self.threshold)


@dataclass(frozen=True)
class GateResult:
    """A gate checked on one task x model; `value` is None when the metric had no data.

    `passed` is None when the gate was not evaluated and that was allowed (a task whose data
    is missing, under `--llmeval-allow-missing`); `reason` then says why, as it does for a
    gate that failed because its task ran no items.
    """

    gate: Gate
    task: str
    model: str
    value: float | None
    n: int
    interval: tuple[float, float] | None
    partial: bool
    passed: bool | None
    reason: str | None = None
    baseline: str | None = None  # comparison gates: the arm `model` is compared with

    @property
    def verdict(self) -> str:
        """`holds`, `FAILS` or `not evaluated`."""
        return {True: "holds", False: "FAILS", None: "not evaluated"}[self.passed]

    @property
    def name(self) -> str:
        """`task[model]::metric op threshold`, as the terminal summary lists it."""
        return f"{self.task}[{self.model}]::{self.gate.text}"

    @property
    def test_name(self) -> str:
        """The gate's name as a test (terminal, JUnit): `task::metric[op threshold model]`.

        The threshold sits inside [...]: pytest's terminal turns '.' outside brackets into '::'.
        """
        spec = self.gate
        versus = f" vs {self.baseline}" if self.baseline else ""
        return f"{self.task}::{spec.metric}[{spec.op}{spec.threshold:g} {self.model}{versus}]"

    def describe(self) -> str:
        """One line: verdict, value, interval, n, and whether the selection was partial."""
        if self.reason is not None:
            return f"gate {self.gate.text} {self.verdict}: {self.reason}, n={self.n}"
        value = "no data" if self.value is None else f"{self.value:.4g}"
        low, high = self.interval or (0.0, 0.0)
        # A delta's bounds may be negative: "a to b" reads where "a-b" would not.
        bounds = f"{low:.3f} to {high:.3f}" if self.baseline else f"{low:.3f}-{high:.3f}"
        ci = f" (95% CI {bounds})" if self.interval else ""
        partial = ", partial selection" if self.partial else ""
        paired = f" paired vs baseline {self.baseline}" if self.baseline else ""
        return (
            f"gate {self.gate.text} {self.verdict}: "
            f"{self.gate.metric}={value}{ci}, n={self.n}{paired}{partial}"
        )

    def as_record(self) -> GateRecord:
        """The plain-JSON form kept in the report."""
        return GateRecord(
            gate=self.gate.text,
            origin=self.gate.origin,
            task=self.task,
            model=self.model,
            metric=self.gate.metric,
            op=self.gate.op,
            threshold=self.gate.threshold,
            value=self.value,
            n=self.n,
            ci95=list(self.interval) if self.interval else None,
            partial=self.partial,
            passed=self.passed,
            reason=self.reason,
            baseline=self.baseline,
        )


@dataclass(frozen=True)
class GateRecord:
    """A checked gate as the report keeps it."""

    __pydantic_config__ = SCHEMA_CONFIG

    gate: str
    """The gate as written, e.g. `accuracy>=0.6`."""
    origin: str
    """Where it was declared: `task`, `ini` or `cli`."""
    task: str
    """The task the gate was checked on (a gate without a task prefix is checked on every task)."""
    model: str
    """The model (arm) checked; a comparison gate's candidate arm; `-` when the gated task
    produced no items at all."""
    metric: str
    """The gated `Metrics` field, e.g. `accuracy`, or a task's own name: a score component,
    a task metric, a composite or a label metric (`f1_toxic`, `macro_f1`)."""
    op: str
    """The comparison `value op threshold`: `>=`, `>`, `<=`, `<` or `==`."""
    threshold: float
    """The number the metric's value is compared with."""
    value: float | None
    """The metric's value; None when it had no data (the gate then fails)."""
    n: int
    """The count the metric is computed over: `n` (all selected items) or the metric's own count
    (`n_answered`, `compared`, `kappa_n`, `*_n`; comparison gates: the paired items, or
    `score_n` for `score_*`); 0 when its task ran no items."""
    ci95: list[float] | None
    """The 95% interval of a proportion metric (comparison gates: of the paired delta)."""
    partial: bool
    """Whether the gate was checked on a partial selection of the task's items."""
    passed: bool | None
    """True: the gate holds; False: it fails (also when its task ran no items); None: not
    evaluated, allowed by `--llmeval-allow-missing` for a task whose data is missing."""
    reason: str | None
    """Why the gate could not be evaluated (`no data: ...`, `needs two arms: ...`); None when
    it was."""
    baseline: str | None = None
    """Comparison gates (`metric(arm) op value`): the baseline arm that `model`, the
    candidate arm, is compared with; None for other gates."""


def parse_gate(text: str, origin: str, task: str | None = None) -> Gate:
    """Parse `[task:]metric op value`; a task's own gates get `task` as their default."""
    match = _GATE.match(text)
    if not match:
        raise GateError(
            f"cannot parse gate {text!r}; expected '[task:]metric op value', "
            f"e.g. 'gsm8k:accuracy>=0.3', or '[task:]metric(arm) op value', e.g. "
            f"'delta_low(patched)>=-0.02' (metrics: {', '.join(METRICS)})"
        )
    metric, arm = match["metric"], match["arm"]
    if arm is not None:
        if not arm:
            raise GateError(f"gate {text!r}: name the candidate arm, e.g. '{metric}(patched)'")
        if metric not in COMPARISON_METRICS:
            known = ", ".join(COMPARISON_METRICS)
            raise GateError(f"gate {text!r}: unknown comparison metric {metric!r}; known: {known}")
    elif metric in COMPARISON_METRICS:
        raise GateError(
            f"gate {text!r}: {metric} compares arms; name the candidate arm, e.g. "
            f"'{metric}(patched){match['op']}{match['value']}'"
        )
    elif "@" in metric and not is_sampled_metric(metric):
        known = ", ".join([*METRICS, "mean@N", "maj@N", "pass@K", "oracle@N", "rerank@N"])
        raise GateError(f"gate {text!r}: unknown metric {metric!r}; known: {known}")
    # Any other name may be a task's own (a score component, a task metric, a composite, a
    # label metric): resolved when the gate is checked, failing there when the task lacks it.
    return Gate(
        task=match["task"] or task or "*",
        metric=metric,
        op=match["op"],
        threshold=float(match["value"]),
        origin=origin,
        arm=arm,
    )


def effective_gates(task: str, declared: Iterable[Gate], overrides: Sequence[Gate]) -> list[Gate]:
    """The task's gates after overrides (later origins replace earlier ones per metric)."""
    ranked = [*declared, *overrides]
    applicable = [(i, gate) for i, gate in enumerate(ranked) if gate.task in (task, "*")]
    # Later origins win; within one origin a gate naming the task beats a "*" gate.
    order = {"task": 0, "ini": 1, "cli": 2}
    applicable.sort(key=lambda pair: (order.get(pair[1].origin, 3), pair[1].task != "*", pair[0]))
    by_metric: dict[tuple[str, str | None], Gate] = {}
    for _, gate in applicable:
        by_metric[(gate.metric, gate.arm)] = gate
    return list(by_metric.values())


def check_gate(gate: Gate, task: str, model: str, metrics: Metrics | None) -> GateResult:
    """Check one gate against a task x model's metrics (None: the task produced nothing)."""
    if is_sampled_metric(gate.metric) and metrics is not None:
        found, ci, reason = sampled_value(gate.metric, metrics)
        return GateResult(
            gate=gate, task=task, model=model, value=found, n=metrics.n, interval=ci,
            partial=metrics.partial, passed=found is not None and gate.holds(found), reason=reason,
        )  # fmt: skip
    if gate.metric not in METRICS:  # a task's own name (task_gates.py)
        own = task_value(gate.metric, metrics, METRICS) if metrics is not None else None
        found, ci, n, reason = own or (None, None, 0, None)
        return GateResult(
            gate=gate, task=task, model=model, value=found, n=n, interval=ci,
            partial=metrics.partial if metrics is not None else False,
            passed=found is not None and gate.holds(found), reason=reason,
        )  # fmt: skip
    value = getattr(metrics, gate.metric) if metrics is not None else None
    interval = getattr(metrics, f"{gate.metric}_ci95", None) if METRICS[gate.metric] else None
    reason = None
    if metrics is not None and value is None and gate.metric in BASELINE_METRICS:
        reason = metrics.baseline_reason or (
            f"{gate.metric} compares with a saved run: give --llmeval-baseline PATH"
        )
    return GateResult(
        gate=gate,
        task=task,
        model=model,
        value=None if value is None else float(value),
        n=int(getattr(metrics, DENOMINATORS.get(gate.metric, "n")) or 0) if metrics else 0,
        interval=(interval[0], interval[1]) if interval else None,
        partial=metrics.partial if metrics is not None else False,
        passed=value is not None and gate.holds(float(value)),
        reason=reason,
    )


def check_run(
    summaries: Mapping[tuple[str, str], Metrics],
    declared: Mapping[str, Sequence[str] | None],
    overrides: Sequence[Gate],
    no_data: Mapping[str, str] | None = None,
    excused: Collection[str] = (),
) -> list[GateResult]:
    """Check every task x model against its effective gates (task < ini < cli).

    `declared` maps a task to the gates it declares (None: unknown). A gate that cannot be
    evaluated fails with its reason rather than passing silently: the gates of a task that ran
    no items (`no_data` maps it to why: data missing, a broken declaration) and a gate the
    user named for a task that produced nothing (misspelt, deselected, not collected). A task
    in `excused` (missing data, allowed explicitly) gets its gates reported as not evaluated.
    """
    results = []
    for (task, model), metrics in summaries.items():
        own = [parse_gate(text, "task", task) for text in declared.get(task) or []]
        for gate in effective_gates(task, own, overrides):
            if gate.arm is None:  # comparison gates: `compare_gates.check_comparisons`
                results.append(check_gate(gate, task, model, metrics))
    ran = {task for task, _ in summaries}
    for task, why in (no_data or {}).items():
        if task in ran:
            continue
        own = [parse_gate(text, "task", task) for text in declared.get(task) or []]
        for gate in effective_gates(task, own, overrides):
            results.append(_not_evaluated(gate, task, f"no data: {why}", task in excused))
    for gate in overrides:
        if gate.task != "*" and gate.task not in ran and gate.task not in (no_data or {}):
            why = f"no data: task {gate.task} produced no items (not collected or deselected)"
            results.append(_not_evaluated(gate, gate.task, why, excused=False))
    return results


def _not_evaluated(gate: Gate, task: str, reason: str, excused: bool) -> GateResult:
    """A gate whose task ran no items: failed, or not evaluated when that was allowed."""
    return GateResult(
        gate=gate,
        task=task,
        model="-",
        value=None,
        n=0,
        interval=None,
        partial=False,
        passed=None if excused else False,
        reason=reason,
    )
