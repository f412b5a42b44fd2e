"""Crashes and broken caches: nothing finished is lost, the run goes on."""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any

import pytest

from conftest import TASK_MODULE, assert_valid_run, mini_rows

# Answers like conftest's responder, logs every call, and kills its own process (SIGKILL) the
# first time it sees KILL in a question: a whole pytest run, or one xdist worker, dies mid-batch.
KILLER = textwrap.dedent(
    """
    import json, os, pathlib, signal

    LOG = pathlib.Path(os.environ["RESPONDER_LOG"])

    def reply(messages, settings):
        question = messages[-1]["content"]
        with LOG.open("a") as handle:
            handle.write(json.dumps(question) + "\\n")
        if "KILL" in question:
            marker = LOG.with_suffix(".killed")
            if not marker.exists():
                marker.write_text("killed once")
                os.kill(os.getpid(), signal.SIGKILL)
        left, op, right = question.split("q: ")[1].split()[:3]
        value = int(left) + int(right)
        return f"{left} {op} {right} = {value}\\n#### {value}"
    """
)


def rows_with_kill(n: int, kill_at: int) -> str:
    lines = mini_rows(n).splitlines()
    row = json.loads(lines[kill_at])
    row["question"] += " KILL"
    lines[kill_at] = json.dumps(row)
    # Four prompts longer than the killing one: the engine generates a share's longest batch
    # first, and the kill must come after some batches finished.
    for i in range(4):
        row = json.loads(lines[i])
        row["question"] += " please!!"
        lines[i] = json.dumps(row)
    return "\n".join(lines) + "\n"


@pytest.fixture
def killproject(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(killer=KILLER, test_mini=TASK_MODULE)
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "mini.jsonl").write_text(rows_with_kill(24, kill_at=13))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    monkeypatch.setenv("RESPONDER_LOG", str(pytester.path / "calls.log"))
    return pytester


def run(pytester: pytest.Pytester, out: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--model",
        "callable:killer:reply",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        f"{out}/report.json",
        "--llmeval-batch-size",
        "2",
        "-p",
        "no:cacheprovider",
        *args,
    )


def items(pytester: pytest.Pytester, out: str) -> list[dict[str, Any]]:
    lines = (pytester.path / out / "items.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: r["id"])


def calls(pytester: pytest.Pytester) -> list[str]:
    return [json.loads(x) for x in (pytester.path / "calls.log").read_text().splitlines()]


def test_killed_run_resumes_without_regenerating_finished_items(
    killproject: pytest.Pytester,
) -> None:
    first = run(killproject, "first")
    assert first.ret not in (0, 1), "the run must have died from SIGKILL"
    finished = items(killproject, "first")
    assert 0 < len(finished) < 24, "some items finished before the kill, not all"
    calls_before = calls(killproject)

    second = run(killproject, "second")
    assert second.ret == 0
    resumed = items(killproject, "second")
    assert len(resumed) == 24 and all(r["outcome"] == "pass" for r in resumed)
    metrics = json.loads((killproject.path / "second" / "report.json").read_text())["tasks"][
        "mini"
    ]["models"]["callable:killer:reply"]["metrics"]
    assert metrics["cached"] + metrics["generated"] == 24
    # Every batch committed before the kill was served from the cache: the second run asked
    # the responder only for what the first never finished (the killed batch included).
    regenerated = calls(killproject)[len(calls_before) :]
    assert metrics["cached"] >= len(finished) and len(regenerated) == metrics["generated"]
    assert not {r["id"] for r in finished} & {r["id"] for r in resumed if not r["cached"]}

    # The resumed run's results equal an uninterrupted run's (cache off, marker already set).
    clean = run(killproject, "clean", "--llmeval-cache", "off")
    assert clean.ret == 0
    keep = ("id", "outcome", "extracted", "response", "score")
    assert [{k: r[k] for k in keep} for r in items(killproject, "clean")] == [
        {k: r[k] for k in keep} for r in resumed
    ]


def test_crashed_worker_loses_only_its_batch(killproject: pytest.Pytester) -> None:
    result = run(killproject, "out", "-n", "2")
    # The kill hit a batch of two: the running item is sent back (R) and the replacement
    # generates that batch one item at a time; the kill does not recur, so nothing errs
    # (a poison item, one that kills every time, is tests/test_poison_items.py).
    assert result.ret == 0
    result.assert_outcomes(passed=25, errors=0)  # 24 items + the gate
    result.stdout.fnmatch_lines(["*replacing crashed worker*", "*25 passed, 1 rerun*"])
    records = items(killproject, "out")
    assert len(records) == 24 and len({r["id"] for r in records}) == 24
    assert all(r["outcome"] == "pass" for r in records)
    report = assert_valid_run(killproject.path / "out")
    assert report["totals"]["errors"] == 0 and report["totals"]["passed"] == 24
    # Items finished before the crash were not generated again by the replacement worker.
    asked = calls(killproject)
    repeated = {q for q in asked if asked.count(q) > 1}
    assert len(repeated) <= 2, f"only the killed batch (size 2) may be generated twice: {repeated}"


def test_unwritable_cache_warns_once_and_runs_uncached(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "not-a-dir").write_text("a file where the cache dir should be")
    result = evalproject.runpytest(
        "--model",
        "callable:answers:reply",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "--llmeval-cache-dir=not-a-dir",
        "--llmeval-batch-size",
        "2",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.assert_outcomes(passed=11, warnings=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*CacheUnavailableWarning*not-a-dir*continues uncached*"])


def test_gpu_pinning_through_the_worker_environment(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(evalproject.path), prepend=os.pathsep)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    args = [
        "--model",
        "callable:answers:reply",
        "--llmeval-data-dir=data",
        "-p",
        "no:cacheprovider",
    ]
    result = evalproject.runpytest_subprocess(
        *args, "--llmeval-report", "two/report.json", "-n", "2"
    )
    assert result.ret == 0
    workers = json.loads((evalproject.path / "two" / "report.json").read_text())["workers"]
    assert {w: info["cuda_visible_devices"] for w, info in workers.items()} == {
        "gw0": "3",
        "gw1": "5",
    }

    result = evalproject.runpytest_subprocess(
        *args, "--llmeval-report", "three/report.json", "-n", "3"
    )
    result.stdout.fnmatch_lines(["*3 xdist workers but 2 GPU(s) (3,5)*round-robin*"])
    workers = json.loads((evalproject.path / "three" / "report.json").read_text())["workers"]
    assert sorted(info["cuda_visible_devices"] for info in workers.values()) == ["3", "3", "5"]

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # no GPUs here without it: nothing is set
    evalproject.runpytest_subprocess(*args, "--llmeval-report", "none/report.json", "-n", "2")
    workers = json.loads((evalproject.path / "none" / "report.json").read_text())["workers"]
    assert [info["cuda_visible_devices"] for info in workers.values()] == [None, None]
