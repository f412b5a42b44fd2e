"""Whole runs on the callable backend whose aggregate figures must be right: errors counted in
accuracy, speed and energy from this run's work only, token counts that are real."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_valid_run, mini_rows, run_evals

MODEL = "callable:answers:reply"
COUNTED = "callable:counted:reply"

# A pipeline that reports its model's token counts (a dict instead of a str).
COUNTED_MODULE = textwrap.dedent(
    """
    def reply(messages, settings):
        left, op, right = messages[-1]["content"].split("q: ")[1].split()[:3]
        value = int(left) + int(right)
        return {"text": f"{left} + {right} = {value}\\n#### {value}", "tokens_in": 9,
                "tokens_out": 11 + value}
    """
)


def metrics_of(folder: Path, model: str = MODEL) -> dict[str, Any]:
    report = json.loads((folder / "report.json").read_text())
    metrics: dict[str, Any] = report["tasks"]["mini"]["models"][model]["metrics"]
    return metrics


def items_of(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]


def run_counted(pytester: pytest.Pytester, folder: str, *args: str) -> pytest.RunResult:
    """The project's evals on the `counted` responder, the report under `folder`."""
    return pytester.runpytest(
        "--model",
        COUNTED,
        "--llmeval-data-dir=data",
        "--llmeval-report",
        f"{folder}/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *args,
    )


def test_errors_count_as_not_correct_and_fail_an_accuracy_gate(
    evalproject: pytest.Pytester,
) -> None:
    # 9 of 10 items error and 1 passes: accuracy was 1.0 and `accuracy >= 0.5` held.
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(boom=9))
    result = run_evals(evalproject)
    assert result.ret == 1
    report = assert_valid_run(evalproject.path / "out")
    metrics = metrics_of(evalproject.path / "out")
    assert (metrics["n"], metrics["n_answered"], metrics["n_errors"]) == (10, 1, 9)
    assert metrics["accuracy"] == pytest.approx(0.1)
    assert metrics["accuracy_answered"] == 1.0
    assert metrics["parse_rate"] == pytest.approx(0.1)
    assert metrics["parse_rate_answered"] == 1.0
    assert metrics["accuracy_strict"] == pytest.approx(0.1)
    [gate] = report["gates"]
    assert gate["gate"] == "accuracy>=0.5" and gate["passed"] is False
    assert gate["value"] == pytest.approx(0.1) and gate["n"] == 10
    result.stdout.fnmatch_lines(["*gate accuracy>=0.5 FAILS: accuracy=0.1 *n=10*"])


def test_an_answered_gate_names_its_own_n(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=1, boom=4))
    run_evals(evalproject, "--gate", "mini:accuracy_answered>=0.8")
    report = json.loads((evalproject.path / "out" / "report.json").read_text())
    gates = {g["metric"]: g for g in report["gates"]}
    assert gates["accuracy_answered"]["n"] == 6
    assert gates["accuracy_answered"]["value"] == pytest.approx(5 / 6)
    assert gates["accuracy"]["n"] == 10 and gates["accuracy"]["value"] == pytest.approx(0.5)


def test_a_fully_cached_rerun_reports_no_speed_or_energy(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(counted=COUNTED_MODULE)
    assert run_counted(evalproject, "first").ret == 0
    first = metrics_of(evalproject.path / "first", COUNTED)
    assert (first["generated"], first["cached"]) == (10, 0)
    assert first["tokens_per_s"] is not None and first["speed_reason"] is None

    assert run_counted(evalproject, "again").ret == 0
    again = metrics_of(evalproject.path / "again", COUNTED)
    assert (again["generated"], again["cached"], again["batches"]) == (0, 10, 0)
    assert again["accuracy"] == 1.0
    for name in ("tokens_per_s", "items_per_min", "latency_p50", "latency_p95", "energy_wh"):
        assert again[name] is None, name
    assert again["speed_reason"] == "all items cached: no generation this run"
    assert again["energy_reason"] == "all items cached: no generation this run"
    assert (again["tokens_in"], again["tokens_out"]) == (0, 0)
    for item in items_of(evalproject.path / "again"):
        assert item["cached"] is True and item["tokens_out"] is not None
        assert item["batch_id"] is None and item["latency_s"] is None
        assert item["energy_reason"] == "cached: no generation this run"


def test_a_partly_cached_run_measures_only_what_it_generated(
    evalproject: pytest.Pytester,
) -> None:
    evalproject.makepyfile(counted=COUNTED_MODULE)
    assert run_counted(evalproject, "first", "--limit", "4").ret == 0
    assert run_counted(evalproject, "full").ret == 0
    before = items_of(evalproject.path / "first")
    items = items_of(evalproject.path / "full")
    metrics = metrics_of(evalproject.path / "full", COUNTED)
    made = [i for i in items if not i["cached"]]
    assert (metrics["generated"], metrics["cached"]) == (6, 4) == (len(made), 10 - len(made))
    # Batch ids are unique per run: a batch of this run never merges with one of the first.
    assert {i["batch_id"] for i in made}.isdisjoint({i["batch_id"] for i in before})
    walls = {i["batch_id"]: i["batch_wall_s"] for i in made}
    assert metrics["batches"] == len(walls)
    assert metrics["tokens_out"] == sum(i["tokens_out"] for i in made)
    assert metrics["tokens_in"] == 9 * 6
    assert metrics["tokens_per_s"] == pytest.approx(
        metrics["tokens_out"] / sum(walls.values()), rel=1e-3
    )
    assert metrics["items_per_min"] == pytest.approx(6 * 60 / sum(walls.values()), rel=1e-3)


def test_a_callable_without_counts_reports_no_tokens(evalproject: pytest.Pytester) -> None:
    # A rule-based pipeline showed "tok/s 85603": whitespace words counted as tokens.
    assert run_evals(evalproject).ret == 0
    metrics = metrics_of(evalproject.path / "out")
    assert metrics["tokens_in"] is None and metrics["tokens_out"] is None
    assert metrics["tokens_per_s"] is None
    assert metrics["speed_reason"] == "token counts unknown: the backend does not count tokens"
    assert metrics["items_per_min"] is not None and metrics["latency_p50"] is not None
    assert all(i["tokens_out"] is None for i in items_of(evalproject.path / "out"))
    summary = (evalproject.path / "out" / "summary.md").read_text().splitlines()
    speed = summary.index("## Latency, throughput, energy, cost")
    header, _, row = summary[speed + 2 : speed + 5]
    cells = {
        name.strip(): value.strip()
        for name, value in zip(header.split("|"), row.split("|"), strict=True)
    }
    assert cells["tok/s"] == "-" and cells["tokens out"] == "-"


def test_a_callable_reports_its_own_counts(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(counted=COUNTED_MODULE)
    assert run_counted(evalproject, "out").ret == 0
    items = items_of(evalproject.path / "out")
    assert all(i["tokens_in"] == 9 for i in items)
    assert sorted(i["tokens_out"] for i in items) == [11 + 2 * i + 1 for i in range(10)]


def test_a_callable_with_bad_counts_errors_its_items(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(
        counted="def reply(messages, settings):\n    return {'text': '#### 1', 'tokens': 3}\n"
    )
    result = run_counted(evalproject, "out")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*counted:reply returned unknown keys ?'tokens'?; known: text, tokens_in, tokens_out"]
    )
