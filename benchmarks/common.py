"""Shared helpers for the benchmarks: the GSM8K rows and a task module written to a temp dir."""

from __future__ import annotations

import contextlib
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LLMEVAL_DATA_DIR", REPO.parent / "shared" / "data"))
GSM8K_TEST = DATA_DIR / "gsm8k" / "test.jsonl"


def gsm8k_rows(n: int) -> list[dict[str, str]]:
    with GSM8K_TEST.open() as handle:
        return [json.loads(line) for _, line in zip(range(n), handle, strict=False)]


def write_gsm8k_task(directory: Path, n: int, max_new_tokens: int) -> Path:
    """A task over the first `n` GSM8K test rows with the shipped prompt, read by path."""
    module = directory / "test_bench_gsm8k.py"
    module.write_text(
        textwrap.dedent(
            f"""
            import json
            from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

            PROMPT = {_shipped_prompt()!r}

            def rows():
                with open({str(GSM8K_TEST)!r}) as handle:
                    return [json.loads(line) for _, line in zip(range({n}), handle)]

            bench = Task(
                name="bench",
                data=DataSource(generate=rows),
                prompt=ChatPrompt(user=PROMPT),
                target=lambda row: scoring.gsm8k_target(row["answer"]),
                scorer=scoring.numeric,
                generation=Generation(max_new_tokens={max_new_tokens}),
            )
            """
        )
    )
    (directory / "pytest.ini").write_text("[pytest]\n")
    return module


def _shipped_prompt() -> str:
    namespace: dict[str, object] = {}
    source = (REPO / "evals" / "test_gsm8k.py").read_text()
    exec(compile(source.split("gsm8k = Task(")[0], "test_gsm8k.py", "exec"), namespace)
    return str(namespace["PROMPT"])


@contextlib.contextmanager
def attention(model: Any, implementation: str) -> Iterator[None]:
    """A transformers model with another attention implementation for the block's duration."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
