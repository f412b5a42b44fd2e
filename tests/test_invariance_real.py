"""The batch-invariance check and the batch-invariant mode on the embedded model (CPU, fp32)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from conftest import assert_valid_run

pytest.importorskip("torch")

# Short prompts that differ by a digit or two: several share a token length, none all.
ARITHMETIC_TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    def rows():
        pairs = [(3, 4), (12, 5), (7, 8), (25, 17), (6, 9), (40, 2), (8, 13), (2, 2)]
        return [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a, b in pairs]

    arithmetic = Task(
        name="arithmetic",
        data=DataSource(generate=rows),
        prompt=ChatPrompt(user="{question} Answer as '#### <number>'."),
        target="answer",
        scorer=scoring.numeric,
        generation=Generation(max_new_tokens=20),
    )
    """
)
# Every run in its own process: an in-process run drops the torch modules it imported (model
# loading imports more of them), and torch cannot register them twice in one process.
ARGS = (
    "--llmeval-report", "out/report.json", "--llmeval-cache=off", "--llmeval-batch-size=4",
    "-W", "ignore::pytest.PytestAssertRewriteWarning",
)  # fmt: skip


def records(project: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (project.path / "out" / "items.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def metrics(project: pytest.Pytester) -> dict[str, Any]:
    report = assert_valid_run(project.path / "out")
    result: dict[str, Any] = report["tasks"]["arithmetic"]["models"]["smollm2-135m"]["metrics"]
    return result


def checked_items(project: pytest.Pytester) -> dict[str, Any]:
    """The checked items' invariance parts by id, after checking the run's counts."""
    checked = [r for r in records(project) if r["invariance"] is not None]
    figures = metrics(project)
    assert figures["invariance_checked"] == len(checked) == 3
    assert figures["invariance_errors"] == 0
    differ = [r for r in checked if r["response"] != r["invariance"]["unbatched_response"]]
    assert figures["invariance_changed"] == len(differ)
    flipped = [r for r in checked if r["score"] != r["invariance"]["unbatched_score"]]
    assert figures["invariance_score_changed"] == len(flipped)
    # Measured on this CPU in fp32: batching changed nothing.
    assert figures["invariance_changed"] == 0 and figures["invariance_accuracy_delta"] == 0
    assert all(r["batch_size"] > 1 for r in checked)  # the batched side was batched
    return {r["id"]: r["invariance"] for r in checked}


def test_invariance_check_on_the_embedded_model_alone_and_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_arithmetic=ARITHMETIC_TASK)
    pytester.runpytest_subprocess("--llmeval-invariance-check=3", *ARGS)
    alone = checked_items(pytester)
    result = pytester.runpytest_subprocess("-n", "2", "--llmeval-invariance-check=3", *ARGS)
    assert result.ret in (0, 1), result.stdout.str()
    assert {r["worker"] for r in records(pytester)} == {"gw0", "gw1"}
    assert checked_items(pytester) == alone  # the same items, and the same unbatched texts


def test_batch_invariant_mode_gives_the_unbatched_texts_on_the_embedded_model(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_arithmetic=ARITHMETIC_TASK)
    result = pytester.runpytest_subprocess(
        "--llmeval-batch-invariant", "--llmeval-invariance-check=8", *ARGS
    )
    assert result.ret in (0, 1), result.stdout.str()
    every = records(pytester)
    assert len(every) == 8 and all(r["batch_invariant"] is True for r in every)
    assert any(r["batch_size"] > 1 for r in every), "no two prompts shared a token length"
    for record in every:
        assert record["response"] == record["invariance"]["unbatched_response"]
        assert record["tokens_in"] is not None
    # Each batch holds prompts of one token length: no padding anywhere.
    by_batch: dict[str, set[int]] = {}
    for record in every:
        by_batch.setdefault(record["batch_id"], set()).add(record["tokens_in"])
    assert all(len(lengths) == 1 for lengths in by_batch.values())
    assert metrics(pytester)["invariance_changed"] == 0
