"""The shipped RAG eval (evals/test_rag.py): its data is checkable, its retrieval finds the
cited documents, and it runs on the embedded model with a small limit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT
from pytest_llmeval.score.numbers import parse_number
from pytest_llmeval.score.text import normalize_text

sys.path.insert(0, str(REPO_ROOT / "evals"))
from rag_pipeline import HERE, BM25Retriever, Corpus, Passage, RagPrompt  # noqa: E402

QUESTIONS = [json.loads(line) for line in (HERE / "questions.jsonl").read_text().splitlines()]
CORPUS = Corpus.load(HERE / "docs")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _numbers(text: str) -> set[Any]:
    return {parse_number(token.rstrip(",")) for token in _NUMBER.findall(text)}


def test_questions_are_enough_and_some_are_unanswerable() -> None:
    assert len(QUESTIONS) >= 40
    assert sum(q["is_blank"] for q in QUESTIONS) >= 8
    assert len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)
    for q in QUESTIONS:
        assert set(q) == {"id", "question", "answer_value", "ref_ids", "is_blank", "answer_type"}
        assert (q["answer_value"] == "is_blank") == q["is_blank"] == (q["answer_type"] == "blank")


@pytest.mark.parametrize("q", [q for q in QUESTIONS if not q["is_blank"]], ids=lambda q: q["id"])
def test_every_answer_is_in_its_cited_documents(q: dict[str, Any]) -> None:
    assert q["ref_ids"] and all(ref in CORPUS.documents for ref in q["ref_ids"]), q["ref_ids"]
    cited = " ".join(CORPUS.documents[ref] for ref in q["ref_ids"])
    if q["answer_type"] == "number":
        assert parse_number(q["answer_value"]) in _numbers(cited), q["question"]
    else:
        assert normalize_text(q["answer_value"]) in normalize_text(cited), q["question"]


def test_unanswerable_questions_cite_nothing() -> None:
    assert all(q["ref_ids"] == [] for q in QUESTIONS if q["is_blank"])


def test_bm25_puts_a_cited_document_in_the_top_three() -> None:
    """Measured once: every answerable question's cited document is among its 3 passages, and
    for 36 of the 41 it is the first."""
    retrieve = BM25Retriever(CORPUS, k=3)
    answerable = [q for q in QUESTIONS if not q["is_blank"]]
    found = [[p.doc_id for p in retrieve(q["question"])] for q in answerable]
    assert all(len(ids) == 3 for ids in found)
    assert all(set(ids) & set(q["ref_ids"]) for ids, q in zip(found, answerable, strict=True))
    assert sum(ids[0] in q["ref_ids"] for ids, q in zip(found, answerable, strict=True)) == 36


def test_corpus_loading_folder_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title A\n\nFirst part.\n\nSecond part.\n")
    (tmp_path / "b.txt").write_text("Only one.")
    (tmp_path / "skip.json").write_text("{}")
    folder = Corpus.load(tmp_path)
    assert folder.passages == [
        Passage("a", "Title A. First part."),
        Passage("a", "Second part."),
        Passage("b", "Only one."),
    ]
    rows = tmp_path / "docs.jsonl"
    rows.write_text('{"id": "x", "text": "Cats purr."}\n{"id": 7, "text": "Dogs bark."}\n')
    retrieve = BM25Retriever(Corpus.load(rows), k=5)  # k above the passage count: all of them
    assert [p.doc_id for p in retrieve("why do dogs bark")][0] == "7"
    assert len(retrieve("dogs")) == 2 and retrieve("the of and") == []


def test_prompt_labels_passages_by_id_and_takes_any_retriever() -> None:
    def mine(question: str) -> list[Passage]:
        return [Passage("kb-1", f"Facts about {question}")]

    system, user = RagPrompt(mine)({"question": "owls"})
    assert "Answer: is_blank" in system["content"] and system["role"] == "system"
    assert user["content"] == "Documents:\n[kb-1] Facts about owls\n\nQuestion: owls"


@pytest.fixture(scope="module")
def rag_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`pytest evals -k rag --limit 3` on the embedded model, once for this module."""
    out = tmp_path_factory.mktemp("rag")
    command = [
        sys.executable, "-m", "pytest", "evals", "-k", "rag", "--limit", "3",
        f"--llmeval-report={out}/report.json", f"--llmeval-cache-dir={out}/cache",
        "-o", f"cache_dir={out}/pytest-cache", "-p", "no:randomly",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env
    )
    return result, out


def test_rag_eval_runs_on_the_embedded_model(
    rag_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, out = rag_run
    output = result.stdout[-4000:] + result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["tasks"]) == {"rag"}, output
    metrics = report["tasks"]["rag"]["models"]["smollm2-135m"]["metrics"]
    assert metrics["n"] == 3 and metrics["partial"] and metrics["task_rows"] == 51
    assert metrics["n_errors"] == 0, output
    # The exit status follows the gate and the items, not a crash.
    (gate,) = report["gates"]
    assert gate["gate"] == "parse_rate>=0.5" and result.returncode in (0, 1), output
    records = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [r["id"].rsplit("/", 1)[0] for r in records] == ["rag/test"] * 3
    # --limit stratifies by answer_type: a number, a text and an unanswerable question.
    kinds = {QUESTIONS[int(r["id"].rsplit("/", 1)[1])]["answer_type"] for r in records}
    assert kinds == {"number", "text", "blank"}
    for record in records:
        assert "Documents:\n[" in record["prompt"] and "Question: " in record["prompt"]
        assert record["method"] in ("json", "lines", "first-line", "none")
        assert record["score"] in (0.0, 1.0) and record["outcome"] in ("pass", "fail")
    # Each record carries the QA components; the report recomputes the WattBot composite
    # from their means (checked by hand here: a composite is a weighted sum of the parts).
    for record in records:
        blank = QUESTIONS[int(record["id"].rsplit("/", 1)[1])]["is_blank"]
        assert set(record["components"]) == {"value_accuracy", "ref_overlap", "na_recall"}
        assert (record["components"]["na_recall"] is None) == (not blank)
    parts = {
        name: [r["components"][name] for r in records if r["components"][name] is not None]
        for name in ("value_accuracy", "ref_overlap", "na_recall")
    }
    means = {name: sum(values) / len(values) for name, values in parts.items()}
    assert metrics["components"] == pytest.approx(means)
    expected = (
        0.75 * means["value_accuracy"] + 0.15 * means["ref_overlap"] + 0.10 * means["na_recall"]
    )
    assert metrics["composites"]["wattbot"] == pytest.approx(expected)
