"""Text similarity of two responses (`score.text.similarity`, normalized Indel) and the
per-item agreement fields (`score.agreement.compare_item`), as agreement runs compute them.

Texts: sentences of classifier answers drawn with a fixed seed (benchmarks/similarity.py),
a short pair (~300 characters, a typical toxicity answer) and a long pair (8 kB), and
reasoning-model answers (`<think>` block then a label line).
"""

from __future__ import annotations

import random
from typing import Any

from similarity import text

from pytest_llmeval.score.agreement import compare_item
from pytest_llmeval.score.text import similarity

PAIRS = 20


def pairs(size: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    return [(text(rng, size), text(rng, size)) for _ in range(PAIRS)]


def compare_all(texts: list[tuple[str, str]]) -> float:
    return sum(similarity(a, b) or 0.0 for a, b in texts)


def bench_similarity_short_pairs(benchmark: Any) -> None:
    assert 0 < benchmark(compare_all, pairs(300)) < PAIRS


def bench_similarity_8kb_pairs(benchmark: Any) -> None:
    assert 0 < benchmark(compare_all, pairs(8192)) < PAIRS


def bench_compare_item_reasoning(benchmark: Any) -> None:
    rng = random.Random(1)
    items = [
        (
            f"<think>{text(rng, 2000)}</think>\n{text(rng, 300)}\nLabel: toxic",
            f"<think>{text(rng, 2000)}</think>\n{text(rng, 300)}\nLabel: non-toxic",
        )
        for _ in range(PAIRS)
    ]

    def compare() -> int:
        fields = [compare_item(a, b, "toxic", "non-toxic") for a, b in items]
        return sum(not f["finegrain_match"] for f in fields)

    assert benchmark(compare) == PAIRS
