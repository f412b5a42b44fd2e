"""Arms compared in whole pytest runs: two `callable:` arms with known answers, and the
embedded model against a callable arm on GSM8K rows with and without xdist."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import GSM8K_EVAL, assert_valid_run, run_evals, shared_data_dir
from pytest_llmeval.analyze.paired import PairCounts, mcnemar_exact, paired_difference_interval

BASE = "callable:answers:reply"
WORSE = "callable:arms:worse"

# The candidate arm: right where the baseline is wrong (row 0, whose question says WRONG),
# wrong on rows 1 and 2, no number at all on row 3, right elsewhere.
ARMS_MODULE = textwrap.dedent(
    """
    def worse(messages, settings):
        left, op, right = messages[-1]["content"].split("q: ")[1].split()[:3]
        row = int(left)
        if row in (1, 2):
            return "#### 999"
        if row == 3:
            return "I would rather not say."
        return f"{left} + {right} = {int(left) + int(right)}\\n#### {int(left) + int(right)}"
    """
)


@pytest.fixture
def armsproject(evalproject: pytest.Pytester) -> pytest.Pytester:
    from conftest import mini_rows

    evalproject.makepyfile(arms=ARMS_MODULE)
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=1))
    return evalproject


def run_arms(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return run_evals(pytester, "--model", WORSE, *args)


def report_of(pytester: pytest.Pytester) -> dict[str, Any]:
    return assert_valid_run(pytester.path / "out")


def test_two_arms_table_report_and_parquet(armsproject: pytest.Pytester) -> None:
    result = run_arms(armsproject, "--gate", f"delta({WORSE})<0")
    assert result.ret == 0, result.stdout.str()
    # 1 won (row 0), 3 lost (rows 1-3), 6 both right: the figures of that 2x2 table.
    counts = PairCounts(both=6, only_a=3, only_b=1, neither=0)
    low, high = paired_difference_interval(counts)  # type: ignore[misc]
    result.stdout.fnmatch_lines(
        [
            "*Arms compared with the baseline arm*",
            f"*mini*{BASE} (baseline)*10*0.900*0 err / 0 unparsed*",
            f"*mini*{WORSE}*10*0.700*-0.200 [[]{low:+.3f}, {high:+.3f}[]]*0.625*1/3/6*"
            "0 err / 1 unparsed*",
            "*Flipped items (all 4)*",
            f"*mini/test/0000*{WORSE} won*1*999*#### 1*",
            f"*mini/test/0001*{WORSE} lost*3*#### 3*#### 999*",
            "*every item pair side by side:*comparison.parquet*",
            f"*gate delta({WORSE})<0 holds: delta=-0.2 (95% CI*), n=10 paired vs baseline {BASE}*",
        ]
    )
    report = report_of(armsproject)
    [comparison] = report["comparisons"]
    assert comparison["baseline"] == BASE and comparison["candidate"] == WORSE
    assert (comparison["wins"], comparison["losses"], comparison["ties"]) == (1, 3, 6)
    assert comparison["delta"] == pytest.approx(-0.2)
    assert comparison["delta_ci95"] == pytest.approx([low, high])
    assert comparison["p_value"] == comparison["p_value_mcnemar"] == mcnemar_exact(counts)
    assert comparison["candidate_failures"]["unparsed"] == 1
    assert comparison["won"] == ["mini/test/0000"]
    assert comparison["lost"] == ["mini/test/0001", "mini/test/0002", "mini/test/0003"]
    assert comparison["latency_n"] == 10 and comparison["latency_delta_p50"] is not None
    assert report["files"]["comparison"] == "comparison.parquet"
    [gate] = [g for g in report["gates"] if g["baseline"]]
    assert (gate["model"], gate["metric"], gate["passed"]) == (WORSE, "delta", True)

    table = pd.read_parquet(armsproject.path / "out" / "comparison.parquet")
    assert len(table) == 10
    assert set(table["baseline_arm"]) == {BASE} and set(table["candidate_arm"]) == {WORSE}
    flipped = table[table.flipped].sort_values("id")
    assert list(flipped["flip"]) == ["won", "lost", "lost", "lost"]
    row = flipped.iloc[1]
    assert (row["baseline_correct"], row["candidate_correct"]) == (True, False)
    assert row["candidate_response"] == "#### 999" and "#### 3" in row["baseline_response"]
    assert row["baseline_latency_s"] is not None

    summary = (armsproject.path / "out" / "summary.md").read_text()
    assert "## Arm comparisons" in summary
    assert f"{WORSE} vs {BASE}: won 1 (mini/test/0000); lost 3" in summary


def test_comparison_gates_decide_the_exit_code(armsproject: pytest.Pytester) -> None:
    holds = run_arms(armsproject, "--gate", f"p_value({WORSE})>0.5", "--junitxml=out/j.xml")
    assert holds.ret == 0, holds.stdout.str()
    junit = (armsproject.path / "out" / "j.xml").read_text()
    assert f'name="p_value[&gt;0.5 {WORSE} vs {BASE}]"' in junit

    fails = run_arms(armsproject, "--gate", f"mini:delta_low({WORSE})>=-0.02")
    assert fails.ret == 1
    fails.stdout.fnmatch_lines(
        [f"*gate delta_low({WORSE})>=-0.02 FAILS: delta_low=-0.5*n=10 paired vs baseline*"]
    )
    # In a task's own gates too.
    task = (armsproject.path / "test_mini.py").read_text()
    gated = task.replace('gates=["accuracy >= 0.5"]', f'gates=["delta_low({WORSE}) >= 0"]')
    (armsproject.path / "test_mini.py").write_text(gated)
    assert run_arms(armsproject).ret == 1


def test_gates_on_arms_that_did_not_run_fail_with_the_reason(
    armsproject: pytest.Pytester,
) -> None:
    alone = run_evals(armsproject, "--gate", f"delta({WORSE})>0")
    assert alone.ret == 1
    alone.stdout.fnmatch_lines([f"*gate delta({WORSE})>0 FAILS: needs two arms: task mini ran*"])
    assert "Arms compared" not in alone.stdout.str()

    missing = run_arms(armsproject, "--gate", "delta(callable:arms:nope)>0")
    assert missing.ret == 1
    missing.stdout.fnmatch_lines(
        [f"*FAILS: arm callable:arms:nope did not run task mini (arms: {BASE}, {WORSE})*"]
    )


def test_baseline_arm_option(armsproject: pytest.Pytester) -> None:
    swapped = run_arms(armsproject, "--llmeval-baseline-arm", WORSE)
    assert swapped.ret == 0, swapped.stdout.str()
    [comparison] = report_of(armsproject)["comparisons"]
    assert (comparison["baseline"], comparison["candidate"]) == (WORSE, BASE)
    assert (comparison["wins"], comparison["losses"]) == (3, 1)

    wrong = run_arms(armsproject, "--llmeval-baseline-arm", "nope")
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    wrong.stderr.fnmatch_lines(
        [f"*--llmeval-baseline-arm nope: no such arm; give one of the run's arms*{BASE}, {WORSE}*"]
    )


# ---- the embedded model against a callable arm, with and without xdist ----------------

# A callable arm that knows GSM8K's answers for the even rows of the shared copy and answers
# 0 elsewhere: right on half of the items whatever the model says.
ORACLE_MODULE = textwrap.dedent(
    """
    import json, os, re
    from pathlib import Path

    ROWS = [json.loads(line) for line in
            (Path(os.environ["ORACLE_DATA"]) / "gsm8k" / "test.jsonl").read_text().splitlines()]
    ANSWERS = {r["question"]: (i, r["answer"].split("####")[-1].strip()) for i, r in enumerate(ROWS)}

    def half(messages, settings):
        question = messages[-1]["content"].split("Question: ", 1)[1]
        row, answer = ANSWERS[question]
        return f"#### {answer}" if row % 2 == 0 else "#### 0"
    """
)

# The same figures with and without xdist; latency is measured, not derived, so it is not
# compared (and the second run reads the generations the first one cached).
STABLE = ["n", "wins", "losses", "ties", "delta", "delta_ci95", "p_value", "won", "lost",
          "baseline_accuracy", "candidate_accuracy", "baseline_failures",
          "candidate_failures"]  # fmt: skip


def test_embedded_model_against_a_callable_arm_same_figures_with_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=":")
    monkeypatch.setenv("ORACLE_DATA", str(shared_data_dir()))
    short = GSM8K_EVAL.replace("max_new_tokens=256", "max_new_tokens=32")
    pytester.makepyfile(test_gsm8k=short, oracle=ORACLE_MODULE)

    def run(folder: str, *args: str) -> dict[str, Any]:
        result = pytester.runpytest_subprocess(
            "--model", "smollm2-135m", "--model", "callable:oracle:half", "--limit", "5",
            f"--llmeval-data-dir={shared_data_dir()}", "--llmeval-report",
            f"{folder}/report.json", "-p", "no:randomly", *args,
        )  # fmt: skip
        assert "Arms compared with the baseline arm" in result.stdout.str(), result.stdout.str()
        [comparison] = json.loads(Path(pytester.path / folder / "report.json").read_text())[
            "comparisons"
        ]
        return comparison

    serial = run("serial", "-n", "0")
    parallel = run("parallel", "-n", "2")
    assert serial["n"] == 5 and serial["candidate"] == "callable:oracle:half"
    assert serial["wins"] + serial["losses"] + serial["ties"] == 5
    assert {k: parallel[k] for k in STABLE} == {k: serial[k] for k in STABLE}
    table = pd.read_parquet(pytester.path / "parallel" / "comparison.parquet")
    assert len(table) == 5 and set(table["baseline_arm"]) == {"smollm2-135m"}
