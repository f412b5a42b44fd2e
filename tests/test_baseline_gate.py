"""Issue 15: `--llmeval-baseline PATH` compares a run with a saved run (main's) item by item and
gates on it (`regression<=0.02`), on real callable-backend runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import mini_rows, run_evals

MODEL = "callable:answers:reply"


def _metrics(folder: Path, arm: str = MODEL) -> dict[str, Any]:
    report = json.loads((folder / "report.json").read_text())
    metrics: dict[str, Any] = report["tasks"]["mini"]["models"][arm]["metrics"]
    return metrics


def _main_run(project: pytest.Pytester, rows: int) -> Path:
    (project.path / "data" / "mini.jsonl").write_text(mini_rows(rows))
    run_evals(project, "--llmeval-cache", "off", "--llmeval-report", "main/report.json")
    return project.path / "main"


def test_a_drop_fails_the_regression_gate(evalproject: pytest.Pytester) -> None:
    main = _main_run(evalproject, 10)  # every row right
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(12, wrong=3))
    result = run_evals(
        evalproject, "--llmeval-cache", "off", "--llmeval-baseline", str(main),
        "--gate", "mini:regression<=0.02",
    )  # fmt: skip
    assert result.ret == 1
    metrics = _metrics(evalproject.path / "out")
    # 10 paired items: 3 lost, none won; 2 items the saved run lacks (stated, not paired).
    assert (metrics["baseline_n"], metrics["baseline_lacks"], metrics["baseline_only"]) == (
        10,
        2,
        0,
    )
    assert (metrics["baseline_wins"], metrics["baseline_losses"]) == (0, 3)
    assert metrics["baseline_accuracy"] == 1.0
    assert metrics["baseline_delta"] == pytest.approx(-0.3)
    # scipy.stats.binomtest(0, 3, 0.5).pvalue == 0.25
    assert metrics["baseline_p_value"] == pytest.approx(0.25)
    low, high = metrics["baseline_delta_ci95"]
    assert low < -0.3 < high and metrics["regression"] == pytest.approx(-low)
    result.stdout.fnmatch_lines(["*regression<=0.02 FAILS: regression=0.*n=10*"])
    result.stdout.fnmatch_lines(["*Against the saved run*"])
    assert "## Against the saved run" in (evalproject.path / "out" / "summary.md").read_text()


def test_an_unchanged_model_passes_and_a_renamed_arm_pairs_with_the_saved_one(
    evalproject: pytest.Pytester,
) -> None:
    main = _main_run(evalproject, 40)
    result = run_evals(
        evalproject, "--llmeval-cache", "off", "--llmeval-baseline", str(main / "report.json"),
        "--model", f"pr={MODEL}", "--gate", "mini:regression<=0.1",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-2000:]
    metrics = _metrics(evalproject.path / "out", "pr")
    assert metrics["baseline_arm"] == MODEL  # the saved run's only arm
    assert (metrics["baseline_n"], metrics["baseline_delta"]) == (40, 0.0)
    # 40 concordant pairs: Newcombe's interval is about +-0.088, so the drop allowed is < 0.1.
    assert 0 < metrics["regression"] < 0.1


def test_a_regression_gate_without_a_saved_run_fails_saying_why(
    evalproject: pytest.Pytester,
) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(4))
    result = run_evals(evalproject, "--gate", "mini:regression<=0.02")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*regression compares with a saved run: give --llmeval-baseline*"])


def test_a_saved_run_that_cannot_be_read_is_a_usage_error(
    evalproject: pytest.Pytester, tmp_path: Path
) -> None:
    result = run_evals(evalproject, "--llmeval-baseline", str(tmp_path / "nothing"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llmeval-baseline: *nothing: no such file*"])
