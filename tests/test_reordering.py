"""Reordered and reduced selections (`--lf`, `--ff`, a shuffling plugin, under xdist too):
every item is generated and scored for itself, as in the plain run."""

from __future__ import annotations

import json
import os

import pytest

from conftest import mini_rows, run_evals

# A `-p random`-style plugin: shuffles the collected items with a fixed seed (the same on
# every xdist worker, as pytest-randomly does), or reverses them.
REORDER = """
import random

def pytest_collection_modifyitems(config, items):
    if config.getoption("--reorder", None) == "shuffle":
        random.Random(1234).shuffle(items)
    elif config.getoption("--reorder", None) == "reverse":
        items.reverse()

def pytest_addoption(parser):
    parser.addoption("--reorder", default=None)
"""


def late_misses(project: pytest.Pytester, n: int = 12, wrong_from: int = 9) -> None:
    """Rows whose misses come last in the file (the `--lf` rerun is shorter than the file)."""
    rows = [json.loads(x) for x in mini_rows(n=n).splitlines()]
    for row in rows[wrong_from:]:
        row["question"] += " WRONG"
    (project.path / "data" / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def answers(project: pytest.Pytester) -> dict[str, tuple[str, str]]:
    """Per item id: its response and outcome, from the run's items.jsonl."""
    lines = (project.path / "out" / "items.jsonl").read_text().splitlines()
    return {r["id"]: (r["response"], r["outcome"]) for r in map(json.loads, lines)}


@pytest.fixture
def reordering(evalproject: pytest.Pytester) -> pytest.Pytester:
    """The mini project with late misses, the reordering conftest and a plain run's answers."""
    late_misses(evalproject)
    evalproject.makeconftest(REORDER)
    return evalproject


def test_last_failed_with_misses_late_in_the_file(reordering: pytest.Pytester) -> None:
    run_evals(reordering, "test_mini.py").assert_outcomes(passed=10, failed=3)
    plain = answers(reordering)
    again = run_evals(reordering, "test_mini.py", "--lf", "--llmeval-cache", "off")
    again.assert_outcomes(failed=4)  # the 3 misses again, and the gate (0 of 3 right)
    again.stdout.no_fnmatch_line("*IndexError*")
    rerun = answers(reordering)
    assert sorted(rerun) == ["mini/test/0009", "mini/test/0010", "mini/test/0011"]
    assert rerun == {key: plain[key] for key in rerun}


@pytest.mark.parametrize(
    "args",
    [["--ff"], ["--reorder", "reverse"], ["--reorder", "shuffle"]],
    ids=["ff", "reverse", "shuffle"],
)
def test_reordered_items_each_get_their_own_answer(
    reordering: pytest.Pytester, args: list[str]
) -> None:
    run_evals(reordering, "test_mini.py").assert_outcomes(passed=10, failed=3)
    plain = answers(reordering)
    # Small batches: windows span several batches of the reordered list; no cache, so every
    # item is generated again in the new order.
    result = run_evals(
        reordering, "test_mini.py", "--llmeval-cache", "off", "--llmeval-batch-size", "2", *args
    )
    result.assert_outcomes(passed=10, failed=3)
    assert answers(reordering) == plain


def test_shuffled_items_under_xdist(
    reordering: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_evals(reordering, "test_mini.py").assert_outcomes(passed=10, failed=3)
    plain = answers(reordering)
    monkeypatch.setenv("PYTHONPATH", str(reordering.path), prepend=os.pathsep)
    result = reordering.runpytest_subprocess(
        "--model", "callable:answers:reply", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "--llmeval-cache", "off",
        "--llmeval-batch-size", "2", "-n", "2", "--reorder", "shuffle", "-p", "no:randomly",
    )  # fmt: skip
    result.assert_outcomes(passed=10, failed=3)
    assert answers(reordering) == plain
