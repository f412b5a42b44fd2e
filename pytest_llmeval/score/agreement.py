"""Backend agreement for one item: two responses and their parsed labels, compared.

Each side's response is split into reasoning and final answer (`<think>` blocks, gpt-oss
harmony channels) before comparison: binary label match, fine-grained label match, parse
success, response and reasoning similarity. Pure functions; the per-task rates and the
assessment are in `pytest_llmeval.analyze.agreement`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_llmeval.score.labels import INVALID
from pytest_llmeval.score.reasoning import split_reasoning
from pytest_llmeval.score.text import similarity

BinaryOf = Callable[[str], str]


def compare_item(
    primary: str,
    reference: str,
    primary_label: str | None,
    reference_label: str | None,
    binary_of: BinaryOf | None = None,
) -> dict[str, Any]:
    """The per-item comparison fields (plain JSON) for two responses and their parsed labels."""

    def to_binary(label: str) -> str:
        # An unparsable response is its own class on both scales.
        return label if label == INVALID or binary_of is None else binary_of(label)

    primary_label = primary_label or INVALID
    reference_label = reference_label or INVALID
    primary_reasoning, primary_answer = split_reasoning(primary)
    reference_reasoning, reference_answer = split_reasoning(reference)
    primary_parsed = _parsed(primary_label)
    reference_parsed = _parsed(reference_label)
    both = primary_parsed and reference_parsed
    return {
        "primary_label": primary_label,
        "reference_label": reference_label,
        "primary_parsed": primary_parsed,
        "reference_parsed": reference_parsed,
        "both_parsed": both,
        # Labels are compared as parsed, "[invalid]" included: two backends that both fail to
        # give a label behave alike; parse rates report that failure separately.
        "finegrain_match": _same(primary_label, reference_label),
        "binary_match": _same(to_binary(primary_label), to_binary(reference_label)),
        "response_similarity": round(similarity(primary_answer, reference_answer), 6),
        "reasoning_similarity": round(similarity(primary_reasoning, reference_reasoning), 6),
        "primary_response": primary_answer,
        "reference_response": reference_answer,
        "primary_reasoning": primary_reasoning,
        "reference_reasoning": reference_reasoning,
        "primary_response_chars": len(primary_answer),
        "reference_response_chars": len(reference_answer),
        "primary_reasoning_chars": len(primary_reasoning),
        "reference_reasoning_chars": len(reference_reasoning),
    }


def _parsed(label: str | None) -> bool:
    return label is not None and label != INVALID


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()
