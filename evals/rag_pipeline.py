"""Retrieval-augmented prompts for `Task(prompt=...)`: a corpus of documents split into
passages, a BM25 retriever over them (`bm25s`) and a prompt builder that puts the top-k
passages, labelled by document id, in front of the question.

The pipeline is a prompt builder, not a backend: the model is whatever `--model` names
(the embedded smollm2-135m, a local transformers model, an OpenAI-compatible server or an
API model), generated in batches like any other task. Retrieval runs where the item's prompt
is built, once per item; the index is built once per process, on first use.

Your own corpus: `Corpus.load(path)` reads a folder of `.md`/`.txt` files (the id is the
file name without extension) or a JSONL file of `{"id": ..., "text": ...}` rows. Your own
retriever: any function `question -> list[Passage]` given to `RagPrompt(retrieve=...)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "rag"


@dataclass(frozen=True)
class Passage:
    """A retrievable piece of a document: `doc_id` is what the model cites."""

    doc_id: str
    text: str


class Corpus:
    """Documents by id, each split into passages (paragraphs, the title kept with the first)."""

    def __init__(self, documents: dict[str, str]) -> None:
        if not documents:
            raise ValueError("the corpus has no documents")
        self.documents = documents
        self.passages = [p for doc_id, text in documents.items() for p in _split(doc_id, text)]

    @classmethod
    def load(cls, path: str | Path) -> Corpus:
        """A folder of .md/.txt files (id = file stem) or a JSONL file with id and text."""
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".md", ".txt"))
            return cls({p.stem: p.read_text(encoding="utf-8") for p in files})
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        return cls({str(row["id"]): str(row["text"]) for row in rows})


def _split(doc_id: str, text: str) -> list[Passage]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    passages: list[Passage] = []
    title = ""
    for paragraph in paragraphs:
        if paragraph.startswith("#") and "\n" not in paragraph:
            title = paragraph.lstrip("# ").strip()  # a heading joins the next paragraph
            continue
        passages.append(Passage(doc_id, f"{title}. {paragraph}" if title else paragraph))
        title = ""
    return passages


class BM25Retriever:
    """The top `k` passages by BM25 (bm25s, English stop words); the index is built on the
    first query, so importing an eval module costs nothing."""

    def __init__(self, corpus: Corpus, k: int = 3) -> None:
        self.corpus, self.k = corpus, k

    @cached_property
    def _index(self) -> Any:
        import bm25s  # imported on first use: collection and other evals never pay for it

        index = bm25s.BM25()
        texts = [p.text for p in self.corpus.passages]
        index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        return index

    def __call__(self, question: str) -> list[Passage]:
        """The `k` passages that score highest for `question`, best first."""
        import bm25s

        tokens = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)
        if not tokens[0]:  # a question of stop words only: nothing to match
            return []
        k = min(self.k, len(self.corpus.passages))
        found, _ = self._index.retrieve(tokens, k=k, show_progress=False)
        return [self.corpus.passages[int(i)] for i in found[0]]


SYSTEM = (
    "Answer the question using only the documents given. Reply in exactly two lines:\n"
    "Answer: <the value: a number without units, or a short name>\n"
    "References: [<ids of the documents that contain the answer>]\n"
    "If the documents do not contain the answer, reply:\n"
    "Answer: is_blank\n"
    "References: []"
)


class RagPrompt:
    """A prompt builder `row -> messages`: the passages `retrieve` gives for
    `row[question_field]`, each as `[doc-id] text`, then the question; `system` says the
    answer format (the one `scoring.parse_qa` reads)."""

    def __init__(
        self,
        retrieve: Callable[[str], Sequence[Passage]],
        system: str = SYSTEM,
        question_field: str = "question",
    ) -> None:
        self.retrieve, self.system, self.question_field = retrieve, system, question_field

    def __call__(self, row: dict[str, Any]) -> list[dict[str, str]]:
        question = str(row[self.question_field])
        context = "\n\n".join(f"[{p.doc_id}] {p.text}" for p in self.retrieve(question))
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": f"Documents:\n{context}\n\nQuestion: {question}"},
        ]
