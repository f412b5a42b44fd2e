"""Whole runs: a gated task that could not run fails its gates, unless allowed explicitly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import run_evals


def read_report(pytester: pytest.Pytester) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((pytester.path / "out" / "report.json").read_text())
    return report


def test_a_gated_task_whose_data_is_missing_fails_its_gate(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").unlink()
    result = run_evals(evalproject)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*gate accuracy>=0.5 FAILS: no data: task mini: data not found: put mini.jsonl*"]
    )
    report = read_report(evalproject)
    assert report["exit_status"] == 1
    [gate] = report["gates"]
    assert gate["task"] == "mini" and gate["gate"] == "accuracy>=0.5"
    assert gate["passed"] is False and gate["value"] is None and gate["n"] == 0
    assert gate["reason"].startswith("no data: task mini: data not found")
    assert report["tasks"]["mini"]["no_data"].startswith("task mini: data not found")
    assert report["totals"]["gates_failed"] == 1


@pytest.mark.parametrize("how", ["option", "ini"])
def test_allowing_missing_data_reports_the_gate_as_not_evaluated(
    evalproject: pytest.Pytester, how: str
) -> None:
    (evalproject.path / "data" / "mini.jsonl").unlink()
    if how == "ini":
        evalproject.makeini("[pytest]\nllmeval_allow_missing = true\n")
        result = run_evals(evalproject)
    else:
        result = run_evals(evalproject, "--llmeval-allow-missing")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*gate accuracy>=0.5 not evaluated: no data: task mini*"])
    [gate] = read_report(evalproject)["gates"]
    assert gate["passed"] is None and gate["reason"].startswith("no data:")


def test_allowing_missing_data_does_not_excuse_a_broken_task(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text('{"other": 1}\n')
    result = run_evals(evalproject, "--llmeval-allow-missing")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*gate accuracy>=0.5 FAILS: no data: task mini: field(s)*"])


def test_a_named_gate_fails_even_when_the_run_made_no_records(
    evalproject: pytest.Pytester,
) -> None:
    result = run_evals(evalproject, "-k", "nothing_matches", "--gate", "gsm8k:accuracy>=0.5")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*gate accuracy>=0.5 FAILS: no data: task gsm8k*"])


def test_a_deselected_task_is_not_gated(evalproject: pytest.Pytester) -> None:
    # Deselecting a task is the user's choice, not missing data: nothing to gate, no failure.
    result = run_evals(evalproject, "-k", "nothing_matches")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
