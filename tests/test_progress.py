"""Progress you can see: model loading as it happens, then lines (a bar in a terminal) with
rates for every model of the run, the reference side included; quiet runs still work."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import pytest

from conftest import item_record, mini_rows, run_evals
from pytest_llmeval.analyze.record import Comparison
from pytest_llmeval.report.progress import Progress


class Clock:
    """A fake monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(clock: Clock, interval: float = 30, total: int = 100, **kw: Any) -> Progress:
    return Progress(interval_s=interval, total=lambda: total, clock=clock, **kw)


def reference_side(model: str, tokens: int | None, cached: bool = False) -> Comparison:
    """The reference half of an agreement record: what progress reads, the rest empty."""
    empty: dict[str, Any] = {f.name: None for f in dataclasses.fields(Comparison)}
    facts = dict(reference_model=model, reference_tokens_out=tokens, reference_cached=cached)
    return Comparison(**{**empty, **facts})


def test_model_loading_is_said_as_it_happens() -> None:
    clock = Clock()
    shown = progress(clock)
    assert shown.event("loading", "qwen", {"backend": "transformers"}) == (
        "llmeval: loading model qwen (transformers)"
    )
    clock.now += 75
    assert "qwen loading for 1m15s" in shown.render()
    assert shown.event("loaded", "qwen", {"seconds": 75.2}) == "llmeval: model qwen loaded in 1m15s"
    assert shown.event("batch", "qwen", {"items": 32}) == (
        "llmeval: model qwen generating its first batch (32 items)"
    )
    # Later batches: the periodic line when one is due, a heartbeat while no item finished.
    assert shown.event("batch", "qwen", {"items": 32}) == (
        "llmeval progress 1m15s: 0/100 items (0%); qwen 0 items"
    )
    assert shown.event("batch", "qwen", {"items": 32}) is None
    assert shown.event("load_failed", "ref", {"error": "OSError: no model files in /m"}) == (
        "llmeval: model ref failed to load: OSError: no model files in /m"
    )
    # --llmeval-progress 0 turns everything off, loading lines included.
    assert progress(clock, interval=0).event("loading", "qwen", {"backend": "x"}) is None


def test_the_first_results_have_a_rate_and_an_eta() -> None:
    # Today "rate pending" until the records spread over an interval (item 77 of a run): a
    # rate counts from the model's first batch, so the first burst of results has one.
    clock = Clock()
    shown = progress(clock, interval=30, total=1319)
    shown.event("batch", "qwen", {"items": 128})
    clock.now += 120  # a slow first batch
    lines = [shown.add(item_record(model="qwen", tokens_out=100, worker="main"))]
    for _ in range(127):
        lines.append(shown.add(item_record(model="qwen", tokens_out=100, worker="main")))
    printed = [line for line in lines if line]
    assert printed == [
        "llmeval progress 2m00s: 1/1319 items (0%), 0.5 items/min, ETA 43h56m; qwen 1 items, "
        "1 tok/s"
    ]
    clock.now += 30
    line = shown.add(item_record(model="qwen", tokens_out=100, worker="main"))
    assert line == (
        "llmeval progress 2m30s: 129/1319 items (10%), 51.6 items/min, ETA 23m04s; "
        "qwen 129 items, 86 tok/s"
    )
    assert "pending" not in line


def test_comparison_runs_count_the_reference_side_tokens() -> None:
    # Today "0 tok/s": the primary was cached and only the reference generated.
    clock = Clock()
    shown = progress(clock, interval=10, total=40)
    shown.event("batch", "ref", {"items": 20})
    record = item_record(
        model="qwen", cached=True, tokens_out=50, comparison=reference_side("ref", 40)
    )
    clock.now += 9
    for _ in range(19):
        assert shown.add(record) is None
    clock.now += 1
    line = shown.add(record)
    assert line == (
        "llmeval progress 10s: 20/40 items (50%), 120.0 items/min, ETA 10s; "
        "ref 20 items, 80 tok/s; qwen 20 items (cached)"
    )


def test_a_backend_that_counts_no_tokens_shows_no_token_rate() -> None:
    clock = Clock()
    shown = progress(clock, interval=5, total=2)
    clock.now += 6
    line = shown.add(item_record(model="pipeline", tokens_out=None, worker="gw0"))
    assert line is not None and "tok/s" not in line
    # Under xdist the controller hears of no batch: the rate counts from the run's start.
    assert (
        line == "llmeval progress 6.0s: 1/2 items (50%), 10.0 items/min, ETA 6.0s; pipeline 1 items"
    )


def test_in_a_terminal_the_line_is_a_bar_with_eta() -> None:
    clock = Clock()
    shown = progress(clock, interval=5, total=1319, bar=True, width=100)
    shown.event("batch", "qwen", {"items": 8})
    clock.now += 125
    for _ in range(299):
        shown.add(item_record(model="qwen", tokens_out=None, cached=True))
    clock.now += 5
    line = shown.add(item_record(model="qwen", tokens_out=None, cached=True))
    assert line is not None
    assert re.match(r"llmeval:  23%\|█+\S* +\| 300/1319 \[02:10<07:2\d,  2\.3\d items/s, ", line)
    assert line.endswith("qwen 300 items (cached)]") and len(line) <= 100


def test_several_workers_are_listed_with_their_shares() -> None:
    clock = Clock()
    shown = progress(clock, interval=1, total=4, shares=lambda: {"gw0": 2, "gw1": 2})
    shown.add(item_record(worker="gw0"))
    clock.now += 2
    line = shown.add(item_record(worker="gw1"))
    assert line is not None and line.endswith("; gw0 1/2, gw1 1/2")


# ---- whole runs ---------------------------------------------------------------------------

COMPARE_ANSWERS = "from answers import reply\n"


def test_loading_lines_come_before_the_first_item_finishes(evalproject: pytest.Pytester) -> None:
    result = run_evals(evalproject, "-v", "--llmeval-cache", "off")
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines(
        [
            "*llmeval: loading model callable:answers:reply (callable)",
            "*llmeval: model callable:answers:reply loaded in *s",
            "*llmeval: model callable:answers:reply generating its first batch (8 items)",
            "*mini/test/0000 PASSED*",
        ]
    )


def test_agreement_runs_show_the_reference_side(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(answers_ref=COMPARE_ANSWERS)
    result = run_evals(
        evalproject, "--compare-backend", "callable:answers_ref:reply",
        "--llmeval-cache", "off", "--llmeval-progress", "0.000001",
    )  # fmt: skip
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines(
        [
            "*llmeval: loading model callable:answers:reply (callable)",
            "*llmeval: loading model callable:answers_ref:reply (callable)",
            "*llmeval: model callable:answers_ref:reply generating its first batch*",
        ]
    )
    last = [line for line in result.outlines if line.startswith("llmeval progress")][-1]
    assert "10/10 items (100%)" in last
    assert "callable:answers:reply 10 items; callable:answers_ref:reply 10 items" in last


def test_xdist_workers_say_their_loading_and_the_controller_its_progress(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(evalproject.path), prepend=os.pathsep)
    result = evalproject.runpytest_subprocess(
        "--model", "callable:answers:reply", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "-n", "2", "--llmeval-progress", "0.000001",
    )  # fmt: skip
    result.assert_outcomes(passed=11)
    output = result.outlines + result.errlines
    for worker in ("gw0", "gw1"):
        assert f"[{worker}] llmeval: loading model callable:answers:reply (callable)" in output
    progress_lines = [line for line in output if line.startswith("llmeval progress")]
    assert progress_lines and "10/10 items (100%)" in progress_lines[-1]
    assert progress_lines[-1].endswith("gw0 5/5, gw1 5/5")


@pytest.mark.parametrize(
    "args", [["-q"], ["-p", "no:terminal"], ["--junitxml", "out/junit.xml"]],
    ids=["quiet", "no-terminal", "junitxml"],
)  # fmt: skip
def test_quiet_and_machine_readable_runs_still_work(
    evalproject: pytest.Pytester, args: list[str]
) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=2))
    result = run_evals(evalproject, "--llmeval-progress", "0.000001", *args)
    assert result.ret == 0
    assert (evalproject.path / "out" / "report.json").exists()
    if "no:terminal" in args:
        assert not any("llmeval" in line for line in result.outlines)
    if "--junitxml" in args:
        assert 'tests="11"' in (evalproject.path / "out" / "junit.xml").read_text()
