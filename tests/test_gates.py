"""Unit tests for pytest_llmeval.analyze.gates."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pytest_llmeval.analyze.aggregate import summarize
from pytest_llmeval.analyze.gates import (
    METRICS,
    Gate,
    GateError,
    GateResult,
    check_gate,
    check_run,
    effective_gates,
    parse_gate,
)
from pytest_llmeval.analyze.metrics import METRIC_FIELDS, Metrics

# --- parse_gate ----------------------------------------------------------------


def test_parse_with_task_prefix() -> None:
    gate = parse_gate("gsm8k:accuracy>=0.3", "cli")
    assert gate == Gate(task="gsm8k", metric="accuracy", op=">=", threshold=0.3, origin="cli")
    assert gate.text == "accuracy>=0.3"


def test_parse_without_prefix_applies_to_every_task() -> None:
    assert parse_gate("accuracy>=0.6", "ini").task == "*"


def test_parse_default_task_used_only_without_prefix() -> None:
    assert parse_gate("accuracy>=0.6", "task", task="ethos").task == "ethos"
    assert parse_gate("gsm8k:accuracy>=0.6", "task", task="ethos").task == "gsm8k"


def test_parse_tolerates_spaces() -> None:
    gate = parse_gate("  gsm8k : parse_rate  >=  0.95 ", "ini")
    assert (gate.task, gate.metric, gate.op, gate.threshold) == ("gsm8k", "parse_rate", ">=", 0.95)


@pytest.mark.parametrize("op", [">=", ">", "<=", "<", "=="])
def test_parse_every_op(op: str) -> None:
    gate = parse_gate(f"latency_p95 {op} 2.5", "cli")
    assert gate.op == op
    assert gate.threshold == 2.5


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (">=", 0.5, True),
        (">=", 0.49, False),
        (">", 0.5, False),
        (">", 0.51, True),
        ("<=", 0.5, True),
        ("<=", 0.51, False),
        ("<", 0.5, False),
        ("<", 0.49, True),
        ("==", 0.5, True),
        ("==", 0.51, False),
    ],
)
def test_gate_holds(op: str, value: float, expected: bool) -> None:
    assert parse_gate(f"accuracy{op}0.5", "cli").holds(value) is expected


def test_parse_negative_and_exponent_values() -> None:
    assert parse_gate("accuracy>=-1", "cli").threshold == -1.0
    assert parse_gate("tokens_per_s>=1e3", "cli").threshold == 1000.0


def test_unknown_metric_fails_its_gate_naming_the_fix() -> None:
    # Any word may be a task's own metric (a score component, a composite), known only once
    # its records are aggregated: a misspelt name fails when checked, never passes.
    gate = parse_gate("gsm8k:acuracy>=0.3", "cli")
    result = check_gate(gate, "gsm8k", "m", _metrics())
    assert result.passed is False and result.value is None
    message = str(result.reason)
    assert "unknown metric 'acuracy' (did you mean 'accuracy'?)" in message
    assert "accuracy, mean_score" in message  # where the known metrics are
    with pytest.raises(GateError, match="unknown metric 'best@5'"):
        parse_gate("best@5>=0.3", "cli")  # `@` names only best-of-n metrics


@pytest.mark.parametrize(
    "text", ["", "accuracy", "accuracy >= high", "accuracy => 0.5", "accuracy != 0.5", ">= 0.5"]
)
def test_garbage_raises_naming_input(text: str) -> None:
    with pytest.raises(GateError) as excinfo:
        parse_gate(text, "cli")
    assert repr(text) in str(excinfo.value)
    assert "gsm8k:accuracy>=0.3" in str(excinfo.value)  # shows the expected form


@pytest.mark.parametrize("text", ["accuracy>=1.2.3", "accuracy>=."])
def test_malformed_number_raises_gate_error(text: str) -> None:
    with pytest.raises(GateError, match="cannot parse gate"):
        parse_gate(text, "cli")


# --- effective_gates -------------------------------------------------------------


def _by_metric(gates: list[Gate]) -> dict[str, Gate]:
    return {gate.metric: gate for gate in gates}


def test_overrides_replace_per_metric_task_ini_cli() -> None:
    declared = [
        parse_gate("accuracy>=0.3", "task", task="gsm8k"),
        parse_gate("parse_rate>=0.9", "task", task="gsm8k"),
        parse_gate("latency_p95<=10", "task", task="gsm8k"),
    ]
    overrides = [
        parse_gate("gsm8k:accuracy>=0.4", "ini"),
        parse_gate("parse_rate>=0.8", "ini"),
        parse_gate("gsm8k:accuracy>=0.5", "cli"),
    ]
    result = _by_metric(effective_gates("gsm8k", declared, overrides))
    assert set(result) == {"accuracy", "parse_rate", "latency_p95"}
    assert (result["accuracy"].origin, result["accuracy"].threshold) == ("cli", 0.5)
    assert (result["parse_rate"].origin, result["parse_rate"].threshold) == ("ini", 0.8)
    assert result["latency_p95"].origin == "task"


def test_star_gates_apply_to_every_task_and_others_are_ignored() -> None:
    overrides = [
        parse_gate("accuracy>=0.7", "cli"),
        parse_gate("ethos:parse_rate>=0.99", "cli"),
    ]
    for task in ("gsm8k", "ethos", "anything"):
        gates = _by_metric(effective_gates(task, [], overrides))
        assert gates["accuracy"].threshold == 0.7
        assert ("parse_rate" in gates) is (task == "ethos")


def test_declared_gates_of_other_tasks_are_ignored() -> None:
    declared = [parse_gate("accuracy>=0.3", "task", task="gsm8k")]
    assert effective_gates("ethos", declared, []) == []


# --- check_gate / GateResult -------------------------------------------------------


def _metrics(**overrides: Any) -> Metrics:
    """Metrics of 40 scored items at accuracy 0.55 (other fields empty), then `overrides`."""
    values: dict[str, Any] = {"n": 40, "accuracy": 0.55, "accuracy_ci95": [0.4, 0.7]}
    return replace(summarize([]), **{"partial": False, **values, **overrides})


def test_every_gate_metric_is_a_metrics_field_with_an_interval_when_a_proportion() -> None:
    for metric, proportion in METRICS.items():
        assert metric in METRIC_FIELDS
        assert (f"{metric}_ci95" in METRIC_FIELDS) is proportion, metric


def test_check_gate_pass() -> None:
    result = check_gate(parse_gate("accuracy>=0.5", "cli"), "gsm8k", "qwen0.5b", _metrics())
    assert result.passed is True
    assert result.value == 0.55
    assert result.n == 40
    assert result.interval == (0.4, 0.7)
    assert result.partial is False
    assert result.name == "gsm8k[qwen0.5b]::accuracy>=0.5"


def test_check_gate_fail() -> None:
    result = check_gate(parse_gate("accuracy>=0.6", "cli"), "gsm8k", "m", _metrics())
    assert result.passed is False


def test_check_gate_missing_value_fails() -> None:
    metrics = _metrics(accuracy=None, accuracy_ci95=None, n=0)
    result = check_gate(parse_gate("accuracy>=0.0", "cli"), "gsm8k", "m", metrics)
    assert result.value is None
    assert result.passed is False
    assert result.interval is None
    assert "no data" in result.describe()


def test_check_gate_metric_absent_from_summary_fails() -> None:
    result = check_gate(parse_gate("tokens_per_s>=1", "cli"), "gsm8k", "m", _metrics())
    assert result.value is None and result.passed is False


def test_check_gate_partial_propagates() -> None:
    result = check_gate(parse_gate("accuracy>=0.5", "cli"), "t", "m", _metrics(partial=True))
    assert result.partial is True
    assert "partial selection" in result.describe()


def test_non_proportion_metric_has_no_interval() -> None:
    assert METRICS["latency_p50"] is False
    metrics = _metrics(latency_p50=1.2)
    result = check_gate(parse_gate("latency_p50<=2", "cli"), "t", "m", metrics)
    assert result.passed is True
    assert result.interval is None


def test_describe_contains_n_and_ci() -> None:
    result = check_gate(parse_gate("accuracy>=0.6", "cli"), "gsm8k", "m", _metrics())
    text = result.describe()
    assert "n=40" in text
    assert "95% CI 0.400-0.700" in text
    assert "accuracy=0.55" in text
    assert "FAILS" in text
    passing = check_gate(parse_gate("accuracy>=0.5", "cli"), "gsm8k", "m", _metrics())
    assert "holds" in passing.describe()


def test_as_record_keeps_the_fields() -> None:
    result = check_gate(parse_gate("gsm8k:accuracy>=0.5", "ini"), "gsm8k", "m", _metrics())
    assert isinstance(result, GateResult)
    data = result.as_record()
    assert data.gate == "accuracy>=0.5"
    assert data.origin == "ini"
    assert data.ci95 == [0.4, 0.7]
    assert data.passed is True
    assert data.n == 40


def test_check_run_fails_a_gate_on_a_task_that_produced_nothing() -> None:
    summaries = {("gsm8k", "m"): _metrics()}
    cli = [parse_gate("gsm8k:accuracy>=0.5", "cli"), parse_gate("gsm8x:accuracy>=0.5", "cli")]
    results = check_run(summaries, {"gsm8k": ["parse_rate>=0.9"]}, cli)
    by_task = {(r.task, r.gate.metric): r for r in results}
    assert by_task[("gsm8k", "accuracy")].passed
    assert not by_task[("gsm8k", "parse_rate")].passed  # declared by the task; no data
    misspelt = by_task[("gsm8x", "accuracy")]
    assert not misspelt.passed and misspelt.model == "-" and misspelt.value is None


# --- gates that cannot be evaluated (issue 9, point 9) ---------------------------------


def test_gates_of_a_task_without_data_fail_with_the_reason() -> None:
    why = "task ethos: data not found: put ethos.csv under a data dir"
    cli = [parse_gate("parse_rate>=0.9", "cli")]
    results = check_run({}, {"ethos": ["accuracy>=0.6"]}, cli, no_data={"ethos": why})
    assert [(r.task, r.gate.text, r.passed, r.n) for r in results] == [
        ("ethos", "accuracy>=0.6", False, 0),
        ("ethos", "parse_rate>=0.9", False, 0),
    ]
    assert all(r.reason == f"no data: {why}" for r in results)
    assert results[0].describe() == f"gate accuracy>=0.6 FAILS: no data: {why}, n=0"
    record = results[0].as_record()
    assert record.passed is False and record.reason == f"no data: {why}"


def test_missing_data_allowed_explicitly_is_not_evaluated() -> None:
    results = check_run(
        {}, {"ethos": ["accuracy>=0.6"]}, [], no_data={"ethos": "data not found"}, excused={"ethos"}
    )
    [result] = results
    assert result.passed is None and result.verdict == "not evaluated"
    assert result.describe() == "gate accuracy>=0.6 not evaluated: no data: data not found, n=0"


def test_a_named_gate_on_a_task_without_data_is_reported_once() -> None:
    cli = [parse_gate("ethos:accuracy>=0.7", "cli")]
    results = check_run({}, {"ethos": ["accuracy>=0.6"]}, cli, no_data={"ethos": "gone"})
    assert [(r.gate.threshold, r.reason) for r in results] == [(0.7, "no data: gone")]
