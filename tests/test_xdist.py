"""Under pytest-xdist: records cross the channel, gates and reports are the controller's."""

from __future__ import annotations

import json
import os

import pytest

from conftest import assert_valid_run, mini_rows


def test_two_workers_give_the_same_results_as_one_process(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(n=20, wrong=4, boom=1))
    monkeypatch.setenv(
        "PYTHONPATH", str(evalproject.path), prepend=os.pathsep
    )  # workers import answers.py
    common = [
        "--model",
        "callable:answers:reply",
        "--llmeval-data-dir=data",
        "-p",
        "no:cacheprovider",
    ]

    def run(report: str, *extra: str) -> tuple[pytest.RunResult, dict, list[dict]]:  # type: ignore[type-arg]
        result = evalproject.runpytest_subprocess(
            *common,
            "--llmeval-report",
            f"{report}/report.json",
            "--junitxml",
            f"{report}/junit.xml",
            *extra,
        )
        envelope = assert_valid_run(evalproject.path / report)
        items = [
            json.loads(x)
            for x in (evalproject.path / report / "items.jsonl").read_text().splitlines()
        ]
        return result, envelope, sorted(items, key=lambda r: r["id"])

    serial, serial_report, serial_items = run("serial")
    # Without the cache: the serial run's generations would be served, and a cached record
    # carries no batch of this run.
    parallel, parallel_report, parallel_items = run("parallel", "-n", "2", "--llmeval-cache", "off")
    assert serial.ret == parallel.ret == 1  # one item errored
    parallel.assert_outcomes(passed=16, failed=4, errors=1)  # 15 right items + the gate
    keep = ("id", "outcome", "extracted", "score", "response", "error")
    assert [{k: r[k] for k in keep} for r in parallel_items] == [
        {k: r[k] for k in keep} for r in serial_items
    ]
    assert len(parallel_items) == 20
    # Each worker saw its upcoming items and batched them (default batch size 8 here).
    assert max(r.get("batch_size") or 0 for r in parallel_items) > 1
    metrics = [
        r["tasks"]["mini"]["models"]["callable:answers:reply"]["metrics"]
        for r in (serial_report, parallel_report)
    ]
    # The errored item counts as not correct; `accuracy_answered` leaves it out.
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"] == pytest.approx(15 / 20)
    assert metrics[0]["accuracy_answered"] == metrics[1]["accuracy_answered"] == 15 / 19
    assert parallel_report["gates"] == serial_report["gates"]
    assert sorted(load["worker"] for load in parallel_report["model_loads"]) == ["gw0", "gw1"]
    junit = (evalproject.path / "parallel" / "junit.xml").read_text()
    assert junit.count("<testcase ") == 21 and junit.count('name="accuracy[&gt;=0.5') == 1
