"""Issue 15: `pytest-llmeval compare` on real saved runs.

Runs, made once per session in subprocesses: the embedded model on GSM8K with
max_new_tokens 8 (--limit 4) and 32 (--limit 3, so some items only one run has), and the
callable backend on the same items (one arm answering every other item right; a second run
with two arms). Every figure is recomputed here from the runs' items.jsonl: accuracies with
scipy's Wilson interval, McNemar with scipy's binomtest on the discordant counts, Holm by
hand; the matrix cells against the records.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from scipy.stats import binomtest

from conftest import GSM8K_EVAL, REPO_ROOT, shared_data_dir
from pytest_llmeval.backends.weights import CACHE_ENV, model_cache_dir
from pytest_llmeval.cli import main

# Answers a GSM8K question from the offline copy: `half` right on even rows, `right` always.
ORACLE = textwrap.dedent(
    """
    import json, os
    from pathlib import Path

    ROWS = [json.loads(line) for line in
            (Path(os.environ["ORACLE_DATA"]) / "gsm8k" / "test.jsonl").read_text().splitlines()]
    ANSWERS = {r["question"]: (i, r["answer"].split("####")[-1].strip()) for i, r in enumerate(ROWS)}

    def half(messages, settings):
        row, answer = ANSWERS[messages[-1]["content"].split("Question: ", 1)[1]]
        return f"#### {answer}" if row % 2 == 0 else "#### 0"

    def right(messages, settings):
        return "#### " + ANSWERS[messages[-1]["content"].split("Question: ", 1)[1]][1]
    """
)

# run name -> (max_new_tokens, --limit, models)
RUNS: dict[str, tuple[int, int, list[str]]] = {
    "short": (8, 4, ["smollm2-135m"]),
    "long": (32, 3, ["smollm2-135m"]),
    "oracle": (8, 4, ["callable:oracle:half"]),
    "arms": (8, 4, ["half=callable:oracle:half", "right=callable:oracle:right"]),
}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The saved runs of RUNS (run name -> folder), each a real `python -m pytest` run."""
    project = tmp_path_factory.mktemp("compare_runs")
    (project / "oracle.py").write_text(ORACLE)
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO_ROOT}:{project}",
        "ORACLE_DATA": str(shared_data_dir()),
        "HF_HUB_OFFLINE": "1",
        CACHE_ENV: str(model_cache_dir()),
    }
    folders = {}
    for name, (tokens, limit, models) in RUNS.items():
        source = GSM8K_EVAL.replace("max_new_tokens=256", f"max_new_tokens={tokens}")
        (project / "test_gsm8k.py").write_text(source)
        folder = project / name
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "test_gsm8k.py", "-q", "-p", "no:cacheprovider",
             *[arg for model in models for arg in ("--model", model)], "--limit", str(limit),
             f"--llmeval-data-dir={shared_data_dir()}", "--llmeval-cache", "off",
             "--llmeval-report", str(folder / "report.json")],
            cwd=project, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert (folder / "report.json").exists(), done.stdout + done.stderr
        folders[name] = folder
    return folders


def records(folder: Path) -> list[dict[str, Any]]:
    """A run's item records, read straight from its items.jsonl."""
    return [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]


def compare_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["compare", *args, "--format", "json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_the_matrix_cells_are_the_records(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    order = ["short", "long", "arms"]
    assert main(["compare", *(str(runs[n]) for n in order), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    table = pd.read_parquet(tmp_path / "matrix.parquet")
    text = pd.read_csv(tmp_path / "matrix.csv", dtype=str, keep_default_na=False)
    columns = {"short": {"short": "smollm2-135m"}, "long": {"long": "smollm2-135m"},
               "arms": {"arms/half": "half", "arms/right": "right"}}  # fmt: skip
    ids = sorted({r["id"] for n in order for r in records(runs[n])})
    assert list(table["id"]) == ids and list(text["id"]) == ids
    assert list(table.columns[:3]) == ["task", "id", "target"]
    for run in order:
        for column, arm in columns[run].items():
            mine = {r["id"]: r for r in records(runs[run]) if r["arm"] == arm}
            for index, item in enumerate(ids):
                cells = table.iloc[index]
                record = mine.get(item)
                if record is None:  # an item this run did not select: empty, never 0/False
                    assert pd.isna(cells[f"{column}:score"]) and pd.isna(cells[f"{column}:correct"])
                    assert text.iloc[index][f"{column}:correct"] == ""
                    continue
                assert cells["target"] == record["target"]
                if record["extracted"] is None:
                    assert pd.isna(cells[f"{column}:extracted"])
                else:
                    assert cells[f"{column}:extracted"] == record["extracted"]
                assert cells[f"{column}:score"] == record["score"]
                assert bool(cells[f"{column}:correct"]) is record["correct"]
                assert text.iloc[index][f"{column}:correct"] == str(record["correct"])
    # --limit 3 and --limit 4 select different rows: some cells are empty.
    assert table["long:score"].isna().sum() == len(ids) - 3


def right_ids(folder: Path, arm: str | None = None) -> dict[str, bool]:
    return {r["id"]: r["correct"] is True for r in records(folder) if arm in (None, r["arm"])}


def test_paired_figures_and_unpaired_counts_recomputed(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = compare_json(capsys, str(runs["long"]), str(runs["short"]), str(runs["oracle"]),
                       "--out", str(tmp_path))  # fmt: skip
    assert out["baseline"] == "long"
    base = right_ids(runs["long"])
    by_candidate = {c["candidate"]: c for c in out["comparisons"]}
    assert set(by_candidate) == {"short", "oracle"}
    for name, comparison in by_candidate.items():
        other = right_ids(runs[name])
        shared = sorted(base.keys() & other.keys())
        wins = sum(1 for i in shared if other[i] and not base[i])
        losses = sum(1 for i in shared if base[i] and not other[i])
        assert comparison["baseline"] == "long"
        assert comparison["n"] == len(shared)
        assert comparison["baseline_only"] == len(base.keys() - other.keys())
        assert comparison["candidate_only"] == len(other.keys() - base.keys())
        assert (comparison["wins"], comparison["losses"]) == (wins, losses)
        delta = (sum(other[i] for i in shared) - sum(base[i] for i in shared)) / len(shared)
        assert comparison["delta"] == pytest.approx(delta)
        low, high = comparison["delta_ci95"]
        assert -1 <= low <= delta <= high <= 1
        expected_p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
        assert comparison["p_value_mcnemar"] == pytest.approx(expected_p, rel=1e-12)
        # Two candidates: Holm multiplies the smaller p by 2 (and keeps the order).
        assert comparison["p_value"] >= comparison["p_value_mcnemar"]
    # Model against model: 8 tokens parse no number, 32 tokens some: answers differ.
    short = {r["id"]: r["extracted"] for r in records(runs["short"])}
    long = {r["id"]: r["extracted"] for r in records(runs["long"])}
    differ = [i for i in sorted(short.keys() & long.keys()) if short[i] != long[i]]
    assert by_candidate["short"]["answers_differ"] == differ
    # The limit-3 baseline against the limit-4 runs: one item at least only one side ran.
    assert by_candidate["short"]["baseline_only"] + by_candidate["short"]["candidate_only"] > 0
    # The oracle gets half the rows right, the model at 8/32 tokens (almost) none: discordant.
    assert by_candidate["oracle"]["wins"] > 0
    # Accuracies: every item a column ran, errors wrong; Wilson as scipy computes it; the
    # same figure as the run's own report.
    for entry in out["accuracy"]:
        mine = right_ids(runs[entry["column"]])
        right = sum(mine.values())
        assert (entry["items"], entry["correct"]) == (len(mine), right)
        wilson = binomtest(right, len(mine)).proportion_ci(0.95, method="wilson")
        assert entry["ci95"] == pytest.approx([wilson.low, wilson.high], abs=1e-12)
        report = json.loads((runs[entry["column"]] / "report.json").read_text())
        (arm,) = report["tasks"]["gsm8k"]["models"].values()
        assert entry["accuracy"] == pytest.approx(arm["metrics"]["accuracy"])


def test_arms_of_one_run_are_columns_with_the_runs_own_figures_and_holm(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = compare_json(capsys, str(runs["arms"]), str(runs["short"]), "--out", str(tmp_path))
    assert [c["name"] for c in out["columns"]] == ["arms/half", "arms/right", "short"]
    by_candidate = {c["candidate"]: c for c in out["comparisons"]}
    # arms/right against arms/half: what the run itself computed for its two arms.
    (in_run,) = json.loads((runs["arms"] / "report.json").read_text())["comparisons"]
    mine = by_candidate["arms/right"]
    for key in ("n", "wins", "losses", "ties", "delta", "delta_ci95", "p_value_mcnemar"):
        assert mine[key] == in_run[key], key
    assert [i for i in mine["won"]] == in_run["won"]
    # Holm over the task's two comparisons, by hand.
    raw = sorted(c["p_value_mcnemar"] for c in out["comparisons"])
    holm = [min(1.0, 2 * raw[0]), max(min(1.0, 2 * raw[0]), raw[1])]
    assert sorted(c["p_value"] for c in out["comparisons"]) == pytest.approx(holm)
    right = right_ids(runs["arms"], "right")
    assert all(right.values()) and mine["candidate_accuracy"] == 1.0


def test_baseline_by_run_by_column_and_by_folder_not_listed(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = [str(runs["short"]), str(runs["arms"]), "--out", str(tmp_path)]
    by_run = compare_json(capsys, *given, "--baseline", "arms")
    assert by_run["baseline"] == "arms/half"
    assert {c["candidate"] for c in by_run["comparisons"]} == {"short", "arms/right"}
    by_column = compare_json(capsys, *given, "--baseline", "arms/right")
    assert {c["baseline"] for c in by_column["comparisons"]} == {"arms/right"}
    assert {c["candidate"] for c in by_column["comparisons"]} == {"short", "arms/half"}
    # A folder not among the runs (main's run in CI) becomes the first column and baseline.
    extra = compare_json(capsys, *given, "--baseline", str(runs["oracle"]))
    assert extra["baseline"] == "oracle" and extra["columns"][0]["name"] == "oracle"
    assert len(extra["comparisons"]) == 3
    assert main(["compare", *given, "--baseline", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pytest-llmeval compare: --baseline nope: no such run or column")
    assert "arms/half" in err and "\n" not in err


def test_markdown_and_csv_output(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = [str(runs["long"]), str(runs["oracle"]), "--out", str(tmp_path)]
    assert main(["compare", *given]) == 0
    md = capsys.readouterr().out
    out = compare_json(capsys, *given)
    (comparison,) = out["comparisons"]
    assert md.startswith("## gsm8k\n") and "| run " in md and "McNemar p" in md
    assert f"{comparison['baseline_only']} only in `long`" in md
    for item in comparison["won"]:
        assert item in md
    assert f"matrix: {tmp_path / 'matrix.csv'}" in md
    assert main(["compare", *given, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["task"], r["column"]) for r in rows] == [("gsm8k", "long"), ("gsm8k", "oracle")]
    assert rows[0]["delta"] == "" and rows[1]["baseline"] == "long"
    assert float(rows[1]["p_value_mcnemar"]) == comparison["p_value_mcnemar"]
    assert int(rows[1]["paired"]) == comparison["n"]
    assert math.isclose(float(rows[1]["delta"]), comparison["delta"])


def test_runs_in_folders_of_the_same_name_get_their_parents_name(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("main", "pr"):
        shutil.copytree(runs["oracle" if name == "main" else "short"], tmp_path / name / "out")
    out = compare_json(capsys, str(tmp_path / "*" / "out"), "--out", str(tmp_path))
    assert [c["name"] for c in out["columns"]] == ["main/out", "pr/out"]


@pytest.mark.parametrize("args", [["missing"], ["RUN", "missing"]], ids=["alone", "with a run"])
def test_a_missing_run_is_one_line_and_exit_2(
    runs: dict[str, Path], tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [str(runs["short"]) if a == "RUN" else str(tmp_path / a) for a in args]
    assert main(["compare", *paths, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"pytest-llmeval compare: {tmp_path / 'missing'}: no such file; give a run " \
        "folder or its report.json"  # fmt: skip
    assert not (tmp_path / "matrix.csv").exists()


def test_compare_runs_without_torch(runs: dict[str, Path], tmp_path: Path) -> None:
    code = (
        "import sys; from pytest_llmeval.cli import main; "
        f"status = main(['compare', {str(runs['short'])!r}, {str(runs['oracle'])!r}, "
        f"'--out', {str(tmp_path)!r}]); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "sys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "matrix.parquet").exists() and "## gsm8k" in done.stdout
