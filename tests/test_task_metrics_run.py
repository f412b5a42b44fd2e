"""Components, task metrics and composites through a real pytest run on the callable backend:
reported in report.json and summary.md, gated by name, a misspelt name failing its gate."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest

from conftest import REPO_ROOT, shared_data_dir
from pytest_llmeval.cli import main

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
    # models.csv carries the task's own figures beside its accuracy, under their gate names.
    with (qaproject.path / "out" / "models.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["qa wattbot"]) == pytest.approx(0.6875)
    assert [float(row["qa wattbot_low"]), float(row["qa wattbot_high"])] == pytest.approx(
        [low, high], abs=1e-6
    )
    assert float(row["qa value_accuracy"]) == 0.75 and float(row["qa na_recall"]) == 0.5
    assert float(row["qa blank_recall"]) == 0.5
    summary = (qaproject.path / "out" / "summary.md").read_text()
    assert "## Components, task metrics, composites" in summary
    assert "wattbot = 0.75*value_accuracy + 0.25*na_recall (weights sum to 1)" in summary
    # The saved run regated by the CLI: the names resolve on the saved metrics too.
    folder = str(qaproject.path / "out")
    assert main(["regate", folder, "--only", "--gate", "qa:wattbot>=0.65"]) == 0
    assert main(["regate", folder, "--only", "--gate", "qa:wattbot>=0.7"]) == 1
    assert main(["regate", folder, "--only", "--gate", "qa:watbot>=0.1"]) == 1


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


QA_TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Task, scoring

    qa = Task(
        name="qa",
        data=DataSource(files="qa.jsonl"),
        prompt=ChatPrompt(user="q: {question} says: {says}"),
        target="answer_value",
        scorer=scoring.qa(),
    )
    """
)
FAILING_PIPELINE = PIPELINE.replace(
    "return",
    "if 'RAISE' in messages[-1]['content']:\n        raise RuntimeError('boom')\n    return",
)


def test_errored_answerable_item_is_left_out_of_na_recall(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(qa_pipeline=FAILING_PIPELINE, test_mini=QA_TASK)
    rows = [  # an unanswerable question answered blank; an answerable one whose backend fails
        {"question": "q0", "answer_value": "is_blank", "ref_ids": [], "is_blank": True,
         "says": "Answer: is_blank"},
        {"question": "q1", "answer_value": "450", "ref_ids": ["doc1"], "is_blank": False,
         "says": "RAISE"},
    ]  # fmt: skip
    lines = "\n".join(json.dumps(row) for row in rows)
    (evalproject.path / "data" / "qa.jsonl").write_text(lines + "\n")
    result = _run(evalproject)
    result.assert_outcomes(passed=1, errors=1)
    report = json.loads((evalproject.path / "out" / "report.json").read_text())
    metrics = report["tasks"]["qa"]["models"]["callable:qa_pipeline:reply"]["metrics"]
    # na_recall applies to q0 only: 1/1; value_accuracy and ref_overlap to both: (1 + 0)/2.
    assert metrics["components"] == {"value_accuracy": 0.5, "ref_overlap": 0.5, "na_recall": 1.0}
    assert metrics["components_n"] == {"value_accuracy": 2, "ref_overlap": 2, "na_recall": 1}
    items = [
        json.loads(x)
        for x in (evalproject.path / "out" / "items.jsonl").read_text().split("\n")
        if x
    ]
    (failed,) = [item for item in items if item["outcome"] == "error"]
    assert failed["components"] == {"value_accuracy": 0.0, "ref_overlap": 0.0, "na_recall": None}


def test_toxicity_eval_reports_label_metrics_on_real_rows(pytester: pytest.Pytester) -> None:
    """evals/test_toxicity.py on 6 ETHOS rows (3 toxic, 3 non-toxic: `--limit` stratifies on
    the label) with a pipeline that always answers toxic."""
    pytester.syspathinsert()
    source = (REPO_ROOT / "evals" / "test_toxicity.py").read_text(encoding="utf-8")
    pytester.makepyfile(
        always_toxic="def reply(messages, settings):\n    return 'Label: toxic\\nReason: x'\n",
        test_toxicity=source,
    )
    result = pytester.runpytest(
        "--model", "callable:always_toxic:reply", f"--llmeval-data-dir={shared_data_dir()}",
        "--limit", "6", "--llmeval-report", "out/report.json",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    )  # fmt: skip
    result.assert_outcomes(passed=3 + 2, failed=3)  # items, and the two declared gates hold
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    metrics = report["tasks"]["toxicity"]["models"]["callable:always_toxic:reply"]["metrics"]
    toxic, non_toxic = metrics["label_metrics"]["toxic"], metrics["label_metrics"]["non-toxic"]
    # toxic: 3 of 6 answers right, every toxic row found: P 1/2, R 1, F1 2*3/(3+6) = 2/3.
    assert (toxic["precision"], toxic["recall"], toxic["f1"]) == pytest.approx((0.5, 1, 2 / 3))
    assert (toxic["support"], toxic["predicted"]) == (3, 6)
    # non-toxic: never answered: precision undefined, recall 0, F1 0.
    assert (non_toxic["precision"], non_toxic["recall"], non_toxic["f1"]) == (None, 0.0, 0.0)
    assert metrics["macro_f1"] == pytest.approx(1 / 3)
    assert metrics["confusion"] == {
        "toxic": {"toxic": 3, "non-toxic": 0, "[invalid]": 0, "[error]": 0},
        "non-toxic": {"toxic": 3, "non-toxic": 0, "[invalid]": 0, "[error]": 0},
    }
    summary = (pytester.path / "out" / "summary.md").read_text()
    assert "### toxicity [callable:always_toxic:reply]: macro-F1 0.333" in summary
    assert "| target non-toxic |" in summary
    result.stdout.fnmatch_lines(["toxicity [[]callable:always_toxic:reply[]]: macro_f1 0.333*"])


def test_task_metrics_under_xdist_come_from_the_declaration(qaproject: pytest.Pytester) -> None:
    """The controller never imports the Task: its metrics and composites cross as JSON."""
    result = _run(qaproject, "-n", "2")
    assert result.ret == pytest.ExitCode.OK  # wrong answers fail items; every gate holds
    report = json.loads((qaproject.path / "out" / "report.json").read_text())
    metrics = report["tasks"]["qa"]["models"]["callable:qa_pipeline:reply"]["metrics"]
    assert metrics["task_metrics"] == {"blank_recall": 0.5}
    assert metrics["composites"] == {"wattbot": pytest.approx(0.6875)}
    assert {g["gate"]: g["passed"] for g in report["gates"]} == {
        "wattbot>=0.6": True,
        "blank_recall>=0.4": True,
    }
