"""Whole runs: each Task object is collected once; two tasks with one name are an error."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from conftest import run_evals


def read_report(pytester: pytest.Pytester) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((pytester.path / "out" / "report.json").read_text())
    return report


def test_a_task_imported_into_a_second_module_is_collected_once(
    evalproject: pytest.Pytester,
) -> None:
    evalproject.makepyfile(test_reuse="from test_mini import mini\n")
    result = run_evals(evalproject, "-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(passed=11)  # 10 rows and the gate, not 20
    metrics = read_report(evalproject)["tasks"]["mini"]["models"]["callable:answers:reply"]
    assert metrics["metrics"]["n"] == 10
    listed = run_evals(evalproject, "--collect-only", "-q").stdout.lines
    assert sum("mini/test/0000" in line for line in listed) == 1
    assert any(line.startswith("test_mini.py::mini/test/0000") for line in listed)


def test_two_tasks_with_one_name_are_an_error_naming_both_modules(
    evalproject: pytest.Pytester,
) -> None:
    evalproject.makepyfile(
        test_other=textwrap.dedent(
            """
            from pytest_llmeval import ChatPrompt, DataSource, Task, scoring

            other = Task(
                name="mini",
                data=DataSource(files="mini.jsonl"),
                prompt=ChatPrompt(user="q: {question}"),
                target="answer",
                scorer=scoring.numeric,
            )
            """
        )
    )
    result = run_evals(evalproject, "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*task name 'mini' is declared twice*test_mini.py*test_other.py*"])
