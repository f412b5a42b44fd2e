"""Components, task metrics and composites through a real pytest run on the callable backend:
reported in report.json and summary.md, gated by name, a misspelt name failing its gate."""

from __future__ import annotations

import json
import textwrap

import pytest

# A QA pipeline: answers a row's `says` field verbatim.
PIPELINE = textwrap.dedent(
    """
    def reply(messages, settings):
        return messages[-1]["content"].split("says: ")[1]
    """
)

TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Score, Task, metrics

    def qa_scorer(response, target, row):
        answer = response.strip()
        right = float(answer == target)
        blank = target == "is_blank"
        return Score(right, answer, "exact", components={
            "value_accuracy": None if blank else right,
            "na_recall": float(answer == "is_blank") if blank else None,
        })

    qa = Task(
        name="qa",
        data=DataSource(files="qa.jsonl"),
        prompt=ChatPrompt(user="q: {question} says: {says}"),
        target="answer",
        scorer=qa_scorer,
        metrics={"blank_recall": metrics.recall("is_blank")},
        composites={"wattbot": "0.75*value_accuracy + 0.25*na_recall"},
        gates=["wattbot >= 0.6", "blank_recall >= 0.4"],
    )
    """
)

# 4 answerable rows, one answered wrong; 2 unanswerable, one answered "5".
ROWS = [("1", "1"), ("2", "2"), ("3", "3"), ("4", "999"), ("is_blank", "is_blank"),
        ("is_blank", "5")]  # fmt: skip


@pytest.fixture
def qaproject(evalproject: pytest.Pytester) -> pytest.Pytester:
    evalproject.makepyfile(qa_pipeline=PIPELINE, test_mini=TASK)
    lines = [
        json.dumps({"question": f"row {i}", "answer": answer, "says": says})
        for i, (answer, says) in enumerate(ROWS)
    ]
    (evalproject.path / "data" / "qa.jsonl").write_text("\n".join(lines) + "\n")
    return evalproject


def _run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest(
        "--model", "callable:qa_pipeline:reply", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "-W", "ignore::pytest.PytestAssertRewriteWarning",
        *args,
    )  # fmt: skip


def test_composite_task_metric_and_component_reported_and_gated(qaproject: pytest.Pytester) -> None:
    result = _run(qaproject, "--gate", "qa:na_recall>=0.8", "--gate", "qa:value_acuracy>=0.5")
    result.assert_outcomes(passed=6, failed=4)  # items and gates
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((qaproject.path / "out" / "report.json").read_text())
    metrics = report["tasks"]["qa"]["models"]["callable:qa_pipeline:reply"]["metrics"]
    # value_accuracy 3/4; na_recall 1/2; wattbot 0.75*0.75 + 0.25*0.5 = 0.6875.
    assert metrics["components"] == {"value_accuracy": 0.75, "na_recall": 0.5}
    assert metrics["components_n"] == {"value_accuracy": 4, "na_recall": 2}
    assert metrics["task_metrics"] == {"blank_recall": 0.5}
    assert metrics["composites"] == {"wattbot": pytest.approx(0.6875)}
    low, high = metrics["composites_ci95"]["wattbot"]
    assert low <= 0.6875 <= high
    gates = {g["gate"]: g for g in report["gates"]}
    assert gates["wattbot>=0.6"]["passed"] is True
    assert gates["wattbot>=0.6"]["ci95"] == [low, high]
    assert gates["blank_recall>=0.4"]["passed"] is True
    assert gates["blank_recall>=0.4"]["n"] == 2
    assert gates["na_recall>=0.8"]["passed"] is False
    assert gates["na_recall>=0.8"]["value"] == 0.5
    misspelt = gates["value_acuracy>=0.5"]
    assert misspelt["passed"] is False and misspelt["value"] is None
    assert "unknown metric 'value_acuracy' (did you mean 'value_accuracy'?)" in misspelt["reason"]
    result.stdout.fnmatch_lines(
        [
            "qa [[]callable:qa_pipeline:reply[]]: wattbot 0.688 (*), blank_recall 0.500 (*), "
            "value_accuracy 0.750 (*), na_recall 0.500 (*)",
            "*gate value_acuracy>=0.5 FAILS: unknown metric 'value_acuracy'*",
        ]
    )
    summary = (qaproject.path / "out" / "summary.md").read_text()
    assert "## Components, task metrics, composites" in summary
    assert "wattbot = 0.75*value_accuracy + 0.25*na_recall (weights sum to 1)" in summary


def test_composite_with_no_unanswerable_items_is_undefined_and_its_gate_fails(
    qaproject: pytest.Pytester,
) -> None:
    answerable = "\n".join(
        json.dumps({"question": f"row {i}", "answer": str(i), "says": str(i)}) for i in range(3)
    )
    (qaproject.path / "data" / "qa.jsonl").write_text(answerable + "\n")
    result = _run(qaproject)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every item passed, the gates did not
    report = json.loads((qaproject.path / "out" / "report.json").read_text())
    metrics = report["tasks"]["qa"]["models"]["callable:qa_pipeline:reply"]["metrics"]
    assert metrics["components"] == {"value_accuracy": 1.0, "na_recall": None}
    assert metrics["composites"] == {"wattbot": None}
    assert "na_recall has no value" in metrics["composites_reason"]["wattbot"]
    gates = {g["gate"]: g for g in report["gates"]}
    assert gates["wattbot>=0.6"]["passed"] is False
    assert "composite wattbot: undefined: na_recall" in gates["wattbot>=0.6"]["reason"]
    assert gates["blank_recall>=0.4"]["passed"] is False
    assert "blank_recall is undefined (n=0)" in gates["blank_recall>=0.4"]["reason"]
