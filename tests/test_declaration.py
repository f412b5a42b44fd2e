"""report.json says what was run: each task's declaration and the origin of its rows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_valid_run, run_evals
from pytest_llmeval import scoring
from pytest_llmeval.declare.data import LoadedRows
from pytest_llmeval.declare.describe import data_origin, declaration
from pytest_llmeval.declare.task import ChatPrompt, DataSource, Generation, Task

EXAMPLES = [
    {"text": "You filthy animals.", "label": "toxic", "reason": "insults a group"},
    {"text": "Thanks for the recipe!", "label": "non-toxic", "reason": "friendly"},
]


def _canonical_sha256(rows: list[dict[str, Any]]) -> str:
    lines = "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def test_declaration_of_a_classification_task() -> None:
    task = Task(
        name="toxicity",
        data=DataSource(files="ethos.csv", csv_sep=";"),
        prompt=ChatPrompt(
            system="You are a moderator.",
            user="Message:\n{text}",
            few_shot=EXAMPLES,
            answer="Label: {label}\nReason: {reason}",
        ),
        target="label",
        scorer=scoring.label(["toxic", "non-toxic"]),
        generation=Generation(max_new_tokens=48, stop=["\n\n"]),
        label_field="label",
        gates=["accuracy >= 0.55"],
    )
    declared = declaration(task)
    assert declared.prompt.kind == "chat"
    assert declared.prompt.system == "You are a moderator."
    assert declared.prompt.user == "Message:\n{text}"
    assert declared.prompt.answer == "Label: {label}\nReason: {reason}"
    assert declared.prompt.few_shot == 2
    assert declared.prompt.few_shot_sha256 == _canonical_sha256(EXAMPLES)
    assert declared.generation.max_new_tokens == 48
    assert declared.generation.stop == ["\n\n"]
    assert declared.labels == ["toxic", "non-toxic"]
    assert declared.scorer_options == {"labels": ["toxic", "non-toxic"]}
    assert declared.scorer.startswith("label(")
    assert declared.target == "label" and declared.label_field == "label"
    assert declared.gates == ["accuracy >= 0.55"]


def test_data_origin_hashes_the_rows_used() -> None:
    rows = [{"q": str(i), "answer": i} for i in range(5)]
    loaded = LoadedRows(list(rows), "file:/d/x.jsonl", "test", "file", "/d/x.jsonl")
    origin = data_origin(DataSource(files="x.jsonl"), loaded, [1, 3])
    assert (origin.kind, origin.path, origin.rows, origin.rows_used) == (
        "file",
        "/d/x.jsonl",
        5,
        2,
    )
    assert origin.sha256 == _canonical_sha256([rows[1], rows[3]])
    assert origin.hub is None and origin.revision is None


def _report(pytester: pytest.Pytester, folder: str) -> dict[str, Any]:
    return assert_valid_run(pytester.path / folder)


def test_two_runs_differing_in_max_new_tokens_have_different_declarations(
    evalproject: pytest.Pytester,
) -> None:
    run_evals(evalproject, "--llmeval-report", "short/report.json")
    module = evalproject.path / "test_mini.py"
    module.write_text(module.read_text().replace("max_new_tokens=16", "max_new_tokens=64"))
    run_evals(evalproject, "--llmeval-report", "long/report.json")
    short, long = (_report(evalproject, name)["tasks"]["mini"] for name in ("short", "long"))
    assert short["declaration"]["generation"]["max_new_tokens"] == 16
    assert long["declaration"]["generation"]["max_new_tokens"] == 64
    del short["declaration"]["generation"], long["declaration"]["generation"]
    assert short["declaration"] == long["declaration"]
    assert short["declaration"]["prompt"]["user"] == "q: {question}"
    assert short["declaration"]["scorer"] == "numeric"
    assert short["data"] == long["data"]
    data_file = Path(short["data"]["path"])
    assert data_file.name == "mini.jsonl" and short["data"]["kind"] == "file"
    rows = [json.loads(line) for line in data_file.read_text().splitlines()]
    assert short["data"]["sha256"] == _canonical_sha256(rows)
