"""Issue 15: the `pytest-llmeval` command's frame, `list` and `regate` on real saved runs of
the callable backend (gates checked again both ways, exit status as the run's rule)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, mini_rows, run_evals
from pytest_llmeval.cli import main


@pytest.fixture
def saved_run(evalproject: pytest.Pytester) -> Path:
    """A saved run of the mini task: 10 rows, 3 answered wrongly, 1 erroring (accuracy 0.6)."""
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(10, wrong=3, boom=1))
    run_evals(evalproject, "--llmeval-cache", "off")
    return evalproject.path / "out"


def test_regate_checks_the_runs_gates_and_new_ones_both_ways(
    saved_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads((saved_run / "report.json").read_text())
    assert report["tasks"]["mini"]["models"]["callable:answers:reply"]["metrics"]["accuracy"] == 0.6
    # The task's own gate (accuracy >= 0.5) holds, but an item errored: exit 1 as the run.
    assert report["exit_status"] == 1
    assert main(["regate", str(saved_run)]) == 1
    out = capsys.readouterr().out
    assert "accuracy>=0.5 holds" in out and "1 items errored" in out
    # A stricter gate fails; --only leaves the task's gate out.
    assert main(["regate", str(saved_run), "--gate", "mini:accuracy>=0.7", "--only"]) == 1
    out = capsys.readouterr().out
    assert "accuracy>=0.7 FAILS: accuracy=0.6" in out and "accuracy>=0.5" not in out
    assert "1 gates, 1 failed" in out


def test_regate_exits_0_when_every_gate_holds_and_nothing_errored(
    evalproject: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(6, wrong=2))
    run_evals(evalproject, "--llmeval-cache", "off")
    run = str(evalproject.path / "out" / "report.json")
    assert main(["regate", run, "--gate", "mini:accuracy>=0.6"]) == 0
    assert main(["regate", run, "--gate", "mini:accuracy>=0.7"]) == 1
    assert "accuracy>=0.7 FAILS" in capsys.readouterr().out


def test_list_shows_each_run_and_skips_folders_without_a_report_in_a_glob(
    saved_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (saved_run.parent / "notes").mkdir()
    assert main(["list", str(saved_run.parent / "*")]) == 0
    out = capsys.readouterr().out
    assert "callable:answers:reply" in out and "mini[callable:answers:reply] 0.600" in out
    assert "notes" not in out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file; give a run folder or its report.json"),
        (lambda p: p.mkdir(), "not a run folder (no report.json in it)"),
        (lambda p: (p.mkdir(), (p / "report.json").write_text("{")), "not JSON"),
        (
            lambda p: (p.mkdir(), (p / "report.json").write_text('{"schema_version": 1}')),
            "schema version 1, this pytest-llmeval reads version",
        ),
    ],
    ids=["missing", "empty folder", "not json", "old schema"],
)
def test_a_run_that_cannot_be_read_is_one_line_and_exit_2(
    tmp_path: Path, make: object, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run"
    make(path)  # type: ignore[operator]
    assert main(["regate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pytest-llmeval regate: ") and message in err
    assert "\n" not in err


def test_the_command_runs_without_torch(saved_run: Path) -> None:
    code = (
        "import sys; from pytest_llmeval.cli import main; "
        f"status = main(['list', {str(saved_run)!r}]); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "sys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    module = subprocess.run(
        [sys.executable, "-m", "pytest_llmeval", "--help"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert module.returncode == 0 and "regate" in module.stdout and "list" in module.stdout


def test_list_names_runs_whose_folders_share_a_name_by_their_parents(
    saved_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    for parent in ("main", "pr"):
        shutil.copytree(saved_run, tmp_path / parent / "out")
    assert main(["list", str(tmp_path / "*" / "out")]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert names == ["main/out", "pr/out"]
