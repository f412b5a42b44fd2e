"""Backend agreement for one item: two responses and their parsed labels, compared.

Each side's response is split into reasoning and final answer (`<think>` blocks, gpt-oss
harmony channels) before comparison: binary label match, fine-grained label match, parse
success, response and reasoning similarity (normalized Indel, `score.text.similarity`).
Pure functions; the per-task rates and the assessment are in
`pytest_llmeval.analyze.agreement`.
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
    reference: str | None,
    primary_label: str | None,
    reference_label: str | None,
    binary_of: BinaryOf | None = None,
) -> dict[str, Any]:
    """The per-item comparison fields (plain JSON) for two responses and their parsed labels.

    Two labels match only when both sides gave one (a response with no label is a
    disagreement whatever the other side said). `reference` None means the reference
    backend failed: the primary's side is filled in, every reference and comparison field
    is None.
    """

    def to_binary(label: str) -> str:
        # An unparsable response is its own class on both scales.
        return label if label == INVALID or binary_of is None else binary_of(label)

    primary_label = primary_label or INVALID
    primary_reasoning, primary_answer = split_reasoning(primary)
    primary_parsed = _parsed(primary_label)
    fields: dict[str, Any] = {
        "primary_label": primary_label,
        "primary_binary_label": to_binary(primary_label),
        "primary_parsed": primary_parsed,
        "primary_response": primary_answer,
        "primary_reasoning": primary_reasoning,
        "primary_response_chars": len(primary_answer),
        "primary_reasoning_chars": len(primary_reasoning),
    }
    if reference is None:
        return {**fields, **dict.fromkeys(_REFERENCE_FIELDS)}
    reference_label = reference_label or INVALID
    reference_reasoning, reference_answer = split_reasoning(reference)
    reference_parsed = _parsed(reference_label)
    both = primary_parsed and reference_parsed
    reference_binary = to_binary(reference_label)
    return {
        **fields,
        "reference_label": reference_label,
        "reference_binary_label": reference_binary,
        "reference_parsed": reference_parsed,
        "both_parsed": both,
        "finegrain_match": both and _same(primary_label, reference_label),
        "binary_match": both and _same(fields["primary_binary_label"], reference_binary),
        "response_indel_similarity": _rounded(similarity(primary_answer, reference_answer)),
        # Only where both sides reasoned: a model that does not reason against another one
        # that does not either is "no data", not a perfect match.
        "reasoning_indel_similarity": (
            _rounded(similarity(primary_reasoning, reference_reasoning))
            if primary_reasoning.strip() and reference_reasoning.strip()
            else None
        ),
        "reference_response": reference_answer,
        "reference_reasoning": reference_reasoning,
        "reference_response_chars": len(reference_answer),
        "reference_reasoning_chars": len(reference_reasoning),
    }


_REFERENCE_FIELDS = (
    "reference_label",
    "reference_binary_label",
    "reference_parsed",
    "both_parsed",
    "finegrain_match",
    "binary_match",
    "response_indel_similarity",
    "reasoning_indel_similarity",
    "reference_response",
    "reference_reasoning",
    "reference_response_chars",
    "reference_reasoning_chars",
)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _parsed(label: str | None) -> bool:
    return label is not None and label != INVALID


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()
