"""`pytest-llmeval plot`: the table the figures are drawn from equals the reports' figures, and
the figures are written at their fixed size.

The saved runs are made once per test session in subprocesses: two callable-backend runs (one
of them with two arms) and one short real run of the embedded model on the CPU.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ANSWERS_MODULE, REPO_ROOT, TASK_MODULE, mini_rows
from pytest_llmeval.backends.weights import CACHE_ENV, model_cache_dir
from pytest_llmeval.cli import main
from pytest_llmeval.cli.plot_data import (
    PlotRow,
    breakdown,
    fit_footnote,
    left_out,
    parameters_from_name,
    per_task,
    plot_rows,
    ranking,
)
from pytest_llmeval.cli.runs import load_runs

# Answers every row wrongly ("#### 0"; the mini rows' answers are odd numbers).
WRONG_MODULE = "def reply(messages, settings):\n    return 'It is 0.\\n#### 0'\n"

# The embedded model on three addition rows, a few tokens each: about 10 s on two CPU cores.
TINY_MODULE = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    tiny = Task(
        name="tiny",
        data=DataSource(files="mini.jsonl"),
        prompt=ChatPrompt(user="What is {question}? Answer with the number only."),
        target="answer",
        scorer=scoring.numeric,
        generation=Generation(max_new_tokens=8),
    )
    """
)

FIGURES = [
    "score_vs_size", "score_vs_latency", "score_vs_energy", "score_vs_cost",
    "bubble_size_score_cost", "ranking", "breakdown", "tasks",
]  # fmt: skip


def _pytest(project: Path, *args: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(project), env.get("PYTHONPATH", "")])
    env["HF_HUB_OFFLINE"] = "1"
    env[CACHE_ENV] = str(model_cache_dir())  # the converted embedded model, made once
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    # A run whose gate fails exits 1 and still writes its report; anything else is broken.
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders by name: `one` (callable, 8 of 10 right), `two` (arms `good` 9 of 10 and
    `bad` 0 of 10), `real` (smollm2-135m on 3 rows)."""
    project = tmp_path_factory.mktemp("plotproject")
    (project / "answers.py").write_text(ANSWERS_MODULE)
    (project / "wrong.py").write_text(WRONG_MODULE)
    (project / "test_mini.py").write_text(TASK_MODULE)
    (project / "test_tiny.py").write_text(TINY_MODULE)
    for name, rows in {"data1": mini_rows(10, wrong=2), "data2": mini_rows(10, wrong=1)}.items():
        (project / name).mkdir()
        (project / name / "mini.jsonl").write_text(rows)
    out = project / "runs"
    _pytest(project, "test_mini.py", "--model", "callable:answers:reply",
            "--llmeval-data-dir=data1", "--llmeval-report", f"{out}/one/report.json")  # fmt: skip
    _pytest(project, "test_mini.py", "--model", "good=callable:answers:reply",
            "--model", "bad=callable:wrong:reply", "--llmeval-data-dir=data2",
            "--llmeval-report", f"{out}/two/report.json")  # fmt: skip
    (project / "data3").mkdir()
    (project / "data3" / "mini.jsonl").write_text(mini_rows(3))
    _pytest(project, "test_tiny.py", "--model", "smollm2-135m", "--llmeval-data-dir=data3",
            "--llmeval-report", f"{out}/real/report.json")  # fmt: skip
    return {name: out / name for name in ("one", "two", "real")}


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _items(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (bytes 16-24)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_table_equals_the_reports(runs: dict[str, Path]) -> None:
    rows = plot_rows(load_runs([str(runs[n]) for n in ("one", "two", "real")]))
    by = {(r.run, r.arm): r for r in rows}
    assert list(by) == [
        ("one", "callable:answers:reply"), ("two", "good"), ("two", "bad"), ("real", "smollm2-135m")
    ]  # fmt: skip
    # Values read back from report.json with json, not through the code under test.
    for (run, arm), row in by.items():
        task = "tiny" if run == "real" else "mini"
        metrics = _report(runs[run])["tasks"][task]["models"][arm]["metrics"]
        assert row.task == task
        assert (row.score, [row.score_low, row.score_high]) == (
            metrics["accuracy"], metrics["accuracy_ci95"]
        )  # fmt: skip
        assert (row.n, row.n_correct, row.generated) == (10 if run != "real" else 3,
                                                         metrics["n_correct"], metrics["generated"])  # fmt: skip
    # 8 of 10, 9 of 10, 0 of 10; Wilson 95% intervals from statsmodels
    # proportion_confint(k, 10, method="wilson").
    assert by[("one", "callable:answers:reply")].score == 0.8
    assert by[("one", "callable:answers:reply")].score_low == pytest.approx(0.4901625, abs=1e-6)
    assert by[("one", "callable:answers:reply")].score_high == pytest.approx(0.9433178, abs=1e-6)
    assert by[("two", "good")].score == 0.9
    assert by[("two", "good")].score_low == pytest.approx(0.5958500, abs=1e-6)
    assert by[("two", "bad")].score == 0.0
    assert by[("two", "bad")].score_high == pytest.approx(0.2775328, abs=1e-6)
    # Shapes: the local model a square, the callables circles.
    assert [r.local for r in rows] == [False, False, False, True]
    # Parameters: the loaded model's count from model_loads; a callable has none, and says so.
    real = by[("real", "smollm2-135m")]
    loads = _report(runs["real"])["model_loads"]
    assert (real.parameters, real.parameters_source) == (loads[0]["parameters"], "model_loads")
    assert 130e6 < real.parameters < 140e6
    assert by[("two", "good")].parameters is None and "parameters" in by[("two", "good")].missing
    # Mean latency: the own latencies of the items generated in the run (not those served from
    # the cache: run `two` shares run `one`'s cache), recomputed from items.jsonl.
    for (run, arm), row in by.items():
        latencies = [
            i["latency_s"]
            for i in _items(runs[run])
            if (i.get("arm") or i["model"]) == arm and i["cached"] is False
        ]
        assert row.latency_mean_s == pytest.approx(sum(latencies) / len(latencies), rel=1e-12)
    # Unknown is None with the report's reason, never 0: no GPU energy on the CPU, no price.
    assert real.energy_wh_per_item is None and real.cost_usd_per_item is None
    assert real.missing["energy"] == _report(runs["real"])["tasks"]["tiny"]["models"][
        "smollm2-135m"]["metrics"]["energy_reason"]  # fmt: skip
    assert by[("two", "bad")].missing["cost"].startswith("callable pipeline")


def test_the_command_writes_every_figure_at_800x500_and_the_table(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plot", str(runs["one"]), str(runs["two"]), str(runs["real"]),
                 "--out", str(tmp_path / "fig")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    drawn = ["score_vs_size", "score_vs_latency", "ranking", "breakdown", "tasks"]
    for name in drawn:
        assert _png_size(tmp_path / "fig" / f"{name}.png") == (800, 500)
        assert (tmp_path / "fig" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    # Nothing measured energy or cost: those figures are not drawn, and stdout says why.
    for name in ("score_vs_energy", "score_vs_cost", "bubble_size_score_cost"):
        assert not (tmp_path / "fig" / f"{name}.png").exists()
        assert f"{name}: not drawn: not measured for: " in printed
    assert "real/smollm2-135m" not in printed  # arm names are unique: no run prefix
    assert "smollm2-135m [tiny] (model on the CPU" in printed
    # Size: only the real model has parameters; the callables are named in the footnote.
    assert "score_vs_size: score_vs_size.png, score_vs_size.svg (not measured for: " in printed
    with (tmp_path / "fig" / "plot_data.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["run"], r["arm"], r["score"]) for r in table] == [
        ("one", "callable:answers:reply", "0.8"), ("two", "good", "0.9"),
        ("two", "bad", "0.0"), ("real", "smollm2-135m", table[3]["score"]),
    ]  # fmt: skip
    assert table[0]["parameters"] == "" and table[0]["energy_wh_per_item"] == ""


def test_measured_energy_and_cost_are_plotted_per_generated_item(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A crafted copy of the real run as if a GPU meter and a price table had been there.
    crafted = tmp_path / "priced"
    shutil.copytree(runs["real"], crafted)
    report = _report(crafted)
    metrics = report["tasks"]["tiny"]["models"]["smollm2-135m"]["metrics"]
    metrics.update(energy_wh=0.03, energy_reason=None, cost_usd=0.0045, cost_reason=None)
    (crafted / "report.json").write_text(json.dumps(report))
    (row,) = plot_rows(load_runs([str(crafted)]))
    assert row.energy_wh_per_item == pytest.approx(0.01)  # 0.03 Wh over 3 generated items
    assert row.cost_usd_per_item == pytest.approx(0.0015)
    assert row.missing == {}
    assert main(["plot", str(crafted), "--out", str(tmp_path / "fig"), "--format", "png"]) == 0
    for name in FIGURES:
        assert _png_size(tmp_path / "fig" / f"{name}.png") == (800, 500)
        assert not (tmp_path / "fig" / f"{name}.svg").exists()
    assert "not drawn" not in capsys.readouterr().out


def test_a_single_run_draws_its_per_task_summary(runs: dict[str, Path], tmp_path: Path) -> None:
    assert main(["plot", str(runs["two"]), "--out", str(tmp_path)]) == 0
    assert _png_size(tmp_path / "tasks.png") == (800, 500)
    rows = plot_rows(load_runs([str(runs["two"])]))
    metrics = _report(runs["two"])["tasks"]["mini"]["models"]
    assert per_task(rows) == {
        "mini": {
            arm: (m["metrics"]["accuracy"], *m["metrics"]["accuracy_ci95"])
            for arm, m in metrics.items()
        }
    }
    assert [r.label for r in ranking(rows)] == ["good", "bad"]
    table = breakdown(load_runs([str(runs["two"])]), rows)
    assert table["accuracy"] == [0.9, 0.0]
    assert table["parse_rate"] == [metrics[a]["metrics"]["parse_rate"] for a in ("good", "bad")]


def _row(task: str, n_correct: int, n: int) -> PlotRow:
    return PlotRow(
        run="r", task=task, arm="m", label="m", model="m", backend="openai", local=False,
        metric="accuracy", score=n_correct / n, score_low=None, score_high=None, n=n,
        n_correct=n_correct, generated=n, parameters=None, parameters_source=None,
        latency_mean_s=None, energy_wh_per_item=None, cost_usd_per_item=None, cost_usd=None,
    )  # fmt: skip


def test_the_ranking_pools_the_items_of_several_tasks() -> None:
    (ranked,) = ranking([_row("a", 8, 10), _row("b", 3, 10)])
    # 11 of 20; Wilson 95% from statsmodels proportion_confint(11, 20, method="wilson").
    assert ranked.score == 0.55 and ranked.tasks == 2
    assert ranked.low == pytest.approx(0.3420853, abs=1e-6)
    assert ranked.high == pytest.approx(0.7418021, abs=1e-6)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("qwen7b",), 7_000_000_000),
        (("HuggingFaceTB/SmolLM2-135M-Instruct",), 135_000_000),
        (("Qwen/Qwen2.5-1.5B-Instruct",), 1_500_000_000),
        (("Qwen2.5-7B-Instruct-1M",), 7_000_000_000),
        (("openai:smollm2-360m@http://127.0.0.1:8000/v1",), 360_000_000),
        (("gpt-4o", "callable:answers:reply"), None),
    ],
)
def test_a_parameter_count_is_read_from_the_name(
    names: tuple[str, ...], expected: int | None
) -> None:
    assert parameters_from_name(*names) == expected


def test_bad_input_is_one_line_and_exit_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "fig")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pytest-llmeval plot: {tmp_path / 'nope'}") and err.count("\n") == 1
    assert main(["plot", str(runs["one"]), "--out", str(tmp_path), "--metric", "speed"]) == 2
    assert "--metric speed: no such metric" in capsys.readouterr().err
    assert (
        main(["plot", str(runs["one"]), "--out", str(tmp_path), "--metric", "latency_method"]) == 2
    )
    assert "--metric latency_method: not a number" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["plot", str(runs["one"]), "--out", str(tmp_path / "file")]) == 2
    assert "cannot create the folder" in capsys.readouterr().err


def test_a_footnote_names_each_point_left_out_and_is_cut_to_fit() -> None:
    rows = [_row("a", 8, 10), _row("b", 3, 10)]
    rows[0].missing = {"energy": "no GPU", "cost": "local model"}
    assert left_out(rows, "energy") == "not measured for: m [a] (no GPU)"
    assert left_out(rows, "parameters", "cost") == "not measured for: m [a] (local model)"
    assert left_out(rows, "latency") is None
    lines = fit_footnote("x " * 2000).splitlines()
    assert len(lines) == 8 and lines[-1].endswith("plot_data.csv, column missing)")


def test_plot_imports_no_torch(runs: dict[str, Path], tmp_path: Path) -> None:
    code = (
        "import sys; from pytest_llmeval.cli import main; "
        f"assert main(['plot', {str(runs['real'])!r}, '--out', {str(tmp_path)!r}]) == 0; "
        "assert 'torch' not in sys.modules and 'pytest' not in sys.modules, 'heavy import'; "
        "assert 'matplotlib' in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ranking.png").exists()


def test_runs_whose_folders_share_a_name_are_drawn(runs: dict[str, Path], tmp_path: Path) -> None:
    # Two runs saved as `<x>/out` (the usual --llmeval-report layout) are named `a/out`,
    # `b/out`; the breakdown looked their metrics up by the bare folder name and crashed.
    for parent, run in (("a", "one"), ("b", "two")):
        shutil.copytree(runs[run], tmp_path / parent / "out")
    out = tmp_path / "fig"
    assert main(["plot", str(tmp_path / "*" / "out"), "--out", str(out), "--format", "png"]) == 0
    assert _png_size(out / "breakdown.png") == (800, 500)
    labels = {row.run for row in plot_rows(load_runs([str(tmp_path / "*" / "out")]))}
    assert labels == {"a/out", "b/out"}
