"""Retrieval-augmented QA over a shipped document collection (no download), WattBot style.

Data: 12 short self-written documents about a fictional lab's clusters, models and energy use
(`rag/docs/*.md`) and 51 questions (`rag/questions.jsonl`: `answer_value`, `ref_ids`,
`is_blank`), 10 of them not answerable from the documents; see rag/README.md. Each question's
prompt holds the 3 passages BM25 ranks highest (`rag_pipeline.py`), labelled by document id;
the model answers `Answer: <value>` / `References: [ids]` or `Answer: is_blank`, on whatever
`--model` names. Scored by `scoring.qa()`: components `value_accuracy` (numbers within 0.1%),
`ref_overlap` (Jaccard of cited ids) and `na_recall` (the unanswerable questions), combined
as `0.75*value_accuracy + 0.15*ref_overlap + 0.10*na_recall`.

Your own corpus and retriever: build the prompt with `RagPrompt(BM25Retriever(
Corpus.load("my_docs/")))`, or `RagPrompt(my_search)` with any `question -> [Passage]`.
"""

from rag_pipeline import HERE, BM25Retriever, Corpus, RagPrompt

from pytest_llmeval import DataSource, Generation, Task, scoring

retrieve = BM25Retriever(Corpus.load(HERE / "docs"), k=3)

rag = Task(
    name="rag",
    description="Answer-value QA over 12 shipped documents with BM25 top-3 passages (WattBot "
    "style: value within 0.1%, cited ids, is_blank)",
    # An absolute path: the questions ship beside this file, no data dir needed.
    data=DataSource(files=str(HERE / "questions.jsonl"), split="test"),
    prompt=RagPrompt(retrieve),
    target=lambda row: str(row["answer_value"]),
    scorer=scoring.qa(tolerance=1e-3),
    # Two short lines are the whole answer; a small budget keeps the CPU run short.
    generation=Generation(max_new_tokens=48),
    # `--limit` samples numeric, text and unanswerable questions alike.
    label_field="answer_type",
    # The WattBot score: a weighted mix of the scorer's components (reported with a bootstrap
    # interval, gateable as `wattbot`).
    composites={"wattbot": "0.75*value_accuracy + 0.15*ref_overlap + 0.10*na_recall"},
    gates=["parse_rate >= 0.5"],
)
