"""Answer extraction over realistic responses: numbers (GSM8K) and labels (toxicity).

Inputs: the response corpus of tests/test_extraction_corpus.py (markdown, LaTeX, signs,
grouping, reasoning models, negations) and the 1319 GSM8K reference solutions from the
offline data (chain of thought then `#### n`, as a model answers in the GSM8K format).
Each benchmark round extracts from every response once; the figure is per round.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from common import GSM8K_TEST, gsm8k_rows

from pytest_llmeval.score.labels import parse_label
from pytest_llmeval.score.numbers import extract_gsm8k


def extract_all_numbers(responses: list[str]) -> int:
    return sum(extract_gsm8k(response).value is not None for response in responses)


def bench_numbers_corpus(benchmark: Any, corpus: ModuleType) -> None:
    responses = [case[1] for case in corpus.NUMBER_CASES]
    found = benchmark(extract_all_numbers, responses)
    assert found == sum(case[2] is not None for case in corpus.NUMBER_CASES)


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason=f"no GSM8K copy at {GSM8K_TEST}")
def bench_numbers_gsm8k_solutions(benchmark: Any, scale: int) -> None:
    responses = [row["answer"] for row in gsm8k_rows(1319 // scale)]
    found = benchmark(extract_all_numbers, responses)
    assert found == len(responses)  # every reference solution ends in `#### n`


def bench_labels_corpus(benchmark: Any, corpus: ModuleType) -> None:
    cases = [(case[1], case[2]) for case in corpus.LABEL_CASES]

    def parse_all() -> int:
        return sum(parse_label(response, labels).method != "none" for response, labels in cases)

    assert benchmark(parse_all) > 0
