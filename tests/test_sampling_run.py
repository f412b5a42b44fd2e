"""Issue 14 on the embedded model: n candidates per item, seeded per (item, sample), cached one
by one (a killed run resumes with only the missing candidates; raising n reuses the cached
ones), voted on, reported (samples.parquet, best-of-n metrics and gates), and one prefill per
distinct prompt on transformers with the same texts as prefilling every row."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.declare.models import resolve_model
from pytest_llmeval.declare.task import Generation
from pytest_llmeval.run.cache import DB_NAME

SAMPLED_TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    QUESTIONS = [("3 + 4", 7), ("12 - 5", 7), ("6 x 7", 42)]

    def rows():
        return [{{"question": f"What is {{q}}?", "answer": str(a)}} for q, a in QUESTIONS]

    draws = Task(
        name="draws",
        data=DataSource(generate=rows, split="demo"),
        prompt=ChatPrompt(user="{{question}} Answer with a short sentence."),
        target="answer",
        scorer=scoring.numeric,
        generation=Generation({generation}),
        select="logprob",
    )
    """
)
QUIET = ("-W", "ignore::pytest.PytestAssertRewriteWarning", "-p", "no:cacheprovider")


def _items(folder: Path) -> dict[str, dict[str, Any]]:
    lines = (folder / "items.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def _candidates(folder: Path) -> dict[str, list[str]]:
    return {i: [s["response"] for s in r["samples"]] for i, r in _items(folder).items()}


@pytest.fixture
def model_modules_loaded() -> None:
    """Generate once in this process: in-process pytester runs drop the modules they import,
    and transformers' lazily imported model modules do not survive a second import."""
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )

    backend = TransformersBackend(resolve_model("smollm2-135m"), TransformersOptions())
    settings = Generation(max_new_tokens=2, temperature=0.8)
    backend.generate([GenerationRequest([{"role": "user", "content": "Hi"}], settings)], "warm")
    backend.close()


@pytest.mark.usefixtures("model_modules_loaded")
def test_a_sampled_run_votes_reports_and_gates(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_draws=SAMPLED_TASK.format(generation="max_new_tokens=10, temperature=0.8, n=4")
    )
    result = pytester.runpytest(
        "--llmeval-report", "out/report.json", "--llmeval-cache", "off",
        "--gate", "maj@4>=0", "--gate", "pass@4>1", *QUIET,
    )  # fmt: skip
    assert result.ret == 1  # pass@4 > 1 cannot hold
    items = _items(pytester.path / "out")
    assert len(items) == 3
    for record in items.values():
        samples, votes = record["samples"], record["votes"]
        assert [s["index"] for s in samples] == [0, 1, 2, 3]
        assert len({s["seed"] for s in samples}) == 4  # each candidate its own seed
        assert votes["n"] == 4 and votes["correct"] == sum(s["correct"] for s in samples)
        assert votes["selector"] == "logprob" and votes["selected"] is not None
        assert record["correct"] == votes["majority_correct"]  # pass_by majority
        assert record["tokens_out"] == sum(s["tokens_out"] for s in samples)
        if record["outcome"] == "fail":
            line = result.stdout.str()
            assert f"maj {votes['majority_votes']}/4" in line
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    metrics = report["tasks"]["draws"]["models"]["smollm2-135m"]["metrics"]
    correct = [s["correct"] for r in items.values() for s in r["samples"]]
    assert metrics["samples_n"] == 4
    assert metrics["mean_at_n"] == pytest.approx(sum(correct) / 12)
    assert metrics["oracle_at_n"] == pytest.approx(
        sum(any(s["correct"] for s in r["samples"]) for r in items.values()) / 3
    )
    assert metrics["pass_at_k"]["4"] == metrics["oracle_at_n"]
    assert report["tasks"]["draws"]["declaration"]["generation"]["n"] == 4
    frame = pd.read_parquet(pytester.path / "out" / "samples.parquet")
    assert len(frame) == 12 and frame["followed"].sum() == 3
    gates = {g["text"]: g["passed"] for g in _gates(report)}
    assert gates == {"maj@4>=0": True, "pass@4>1": False}
    assert "## Sampled candidates" in (pytester.path / "out" / "summary.md").read_text()


def _gates(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {**g, "text": g["text"] if "text" in g else g["gate"]}
        for model in report["tasks"]["draws"]["models"].values()
        for g in model["gates"]
    ]


@pytest.mark.usefixtures("model_modules_loaded")
def test_candidates_do_not_depend_on_batch_size_or_workers_and_raising_n_reuses_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_draws=SAMPLED_TASK.format(generation="max_new_tokens=10, temperature=0.8, n=3")
    )
    off = ("--llmeval-cache", "off")
    runs = {}
    for size in ("1", "4", "8"):
        pytester.runpytest("--llmeval-report", f"b{size}/report.json",
                           "--llmeval-batch-size", size, *off, *QUIET)  # fmt: skip
        runs[size] = _candidates(pytester.path / f"b{size}")
    assert runs["1"] == runs["4"] == runs["8"]
    assert all(len(texts) == 3 and all(texts) for texts in runs["1"].values())
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.runpytest_subprocess("-n", "2", "--llmeval-report", "n2/report.json", *off, *QUIET)
    assert _candidates(pytester.path / "n2") == runs["1"]

    # The cache holds candidates one by one: n=3, then n=5 generates only 3 and 4.
    cache = (f"--llmeval-cache-dir={pytester.path / 'cache'}",)
    pytester.runpytest("--llmeval-report", "n3/report.json", *cache, *QUIET)
    pytester.makepyfile(
        test_draws=SAMPLED_TASK.format(generation="max_new_tokens=10, temperature=0.8, n=5")
    )
    pytester.runpytest("--llmeval-report", "n5/report.json", *cache, *QUIET)
    for item_id, record in _items(pytester.path / "n5").items():
        assert [s["cached"] for s in record["samples"]] == [True] * 3 + [False] * 2
        assert [s["response"] for s in record["samples"]][:3] == runs["1"][item_id]


def test_a_killed_sampled_run_resumes_with_only_the_missing_candidates(tmp_path: Path) -> None:
    (tmp_path / "test_draws.py").write_text(
        SAMPLED_TASK.format(generation="max_new_tokens=24, temperature=0.8, n=5")
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    database = tmp_path / "cache" / DB_NAME
    args = [sys.executable, "-m", "pytest", "-q", "--llmeval-batch-size", "2",
            f"--llmeval-cache-dir={tmp_path / 'cache'}", "-p", "no:cacheprovider"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("PYTEST_XDIST_WORKER", None)
    run = subprocess.Popen(
        [*args, "--llmeval-report", "killed/report.json"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        stored = 0
        while stored < 4:  # two batches of two candidates committed, 15 in all
            assert run.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no candidates were cached in time"
            time.sleep(0.2)
            stored = _rows(database)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    kept = _rows(database)
    assert 4 <= kept < 15
    resumed = subprocess.run(
        [*args, "--llmeval-report", "resumed/report.json"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode in (0, 1), resumed.stdout[-2000:]
    samples = [s for r in _items(tmp_path / "resumed").values() for s in r["samples"]]
    assert len(samples) == 15
    assert sum(s["cached"] for s in samples) == kept  # nothing cached is generated again
    assert _rows(database) == 15


def _rows(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database, timeout=10) as connection:
        try:
            return int(connection.execute("SELECT count(*) FROM generations").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not created yet
            return 0


@pytest.mark.usefixtures("model_modules_loaded")
def test_command_line_sampling_on_a_greedy_task(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_draws=SAMPLED_TASK.format(generation="max_new_tokens=10"))
    refused = pytester.runpytest("--llmeval-report", "no/report.json", "--llmeval-samples",
                                 "2", "--llmeval-cache", "off", *QUIET)  # fmt: skip
    assert refused.ret == 1
    refused.stdout.fnmatch_lines(["*--llmeval-samples 2 draws candidates*--llmeval-temperature*"])
    pytester.runpytest("--llmeval-report", "yes/report.json", "--llmeval-samples", "2",
                       "--llmeval-temperature", "0.7", "--llmeval-cache", "off", *QUIET)  # fmt: skip
    items = _items(pytester.path / "yes")
    assert all(len(r["samples"]) == 2 for r in items.values())
    assert {s["seed"] is not None for r in items.values() for s in r["samples"]} == {True}


def test_one_prefill_per_prompt_gives_the_texts_of_one_prefill_per_row() -> None:
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )

    questions = ["What is 3 + 4? Answer briefly.", "Name the sky's colour, then say why."]
    shared = TransformersBackend(resolve_model("smollm2-135m"), TransformersOptions())
    apart = TransformersBackend(
        resolve_model("smollm2-135m"), TransformersOptions(share_prefill=False)
    )
    try:
        for settings in (Generation(max_new_tokens=16),
                         Generation(max_new_tokens=16, temperature=0.8)):  # fmt: skip
            requests = [
                GenerationRequest([{"role": "user", "content": q}], settings,
                                  item_id=f"t/x/{i}", sample_index=k)
                for i, q in enumerate(questions) for k in range(3)
            ]  # fmt: skip
            one = shared.generate(requests, "shared")
            each = apart.generate(requests, "apart")
            assert [r.text for r in one] == [r.text for r in each]
            assert [r.pad_tokens for r in one] == [r.pad_tokens for r in each]
            assert max(r.pad_tokens or 0 for r in one) > 0  # rows of unequal length
            if not settings.greedy:
                assert len({r.text for r in one[:3]}) > 1  # the candidates differ
                assert all(r.mean_logprob is not None and r.mean_logprob < 0 for r in one)
    finally:
        shared.close()
        apart.close()
