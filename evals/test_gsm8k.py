"""GSM8K (test split, 1319 grade-school math problems), zero-shot with the model's chat template.

Data: the Hub dataset `openai/gsm8k` (config `main`), or an offline copy `gsm8k/test.jsonl`
under the data dir (`--llmeval-data-dir DIR` / `LLMEVAL_DATA_DIR`). The model is asked to reason
step by step and finish with `#### <number>`; the scorer reads that line (strict) or, failing
that, the last number in the response (flexible).
"""

from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

PROMPT = (
    "Solve the following math problem step by step. "
    "At the end, write the final answer on its own line in the form '#### <number>'.\n\n"
    "Question: {question}"
)

gsm8k = Task(
    name="gsm8k",
    description="GSM8K test, zero-shot chain of thought, strict/flexible number extraction",
    data=DataSource(hub="openai/gsm8k", config="main", split="test", files="gsm8k/test.jsonl"),
    prompt=ChatPrompt(user=PROMPT),
    target=lambda row: scoring.gsm8k_target(row["answer"]),
    scorer=scoring.numeric,
    generation=Generation(max_new_tokens=256),
    # Best-of-n (--llmeval-samples 5 --llmeval-temperature 0.7): the vote decides each item,
    # and the model's most confident candidate (highest mean token log-probability) is the
    # reranked pick beside it (rerank@n). One generation per item otherwise: no effect.
    select="logprob",
    # A health check any working instruction model clears (it answers with a number); gate
    # accuracy for your model on the command line: --gate "gsm8k:accuracy>=0.6".
    gates=["parse_rate >= 0.8"],
)
