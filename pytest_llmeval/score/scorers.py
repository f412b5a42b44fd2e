"""Task scorers: `scorer(response, target, row) -> Score`, built on the pure extractors.

A `Score` carries the value (1.0 right, 0.0 wrong, or partial credit), what was extracted from
the response and how, so that a miss can say `expected 18, got 32 (flexible: "... = 32")`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_llmeval.score.extraction import TargetError
from pytest_llmeval.score.labels import LabelSet
from pytest_llmeval.score.numbers import (
    extract_gsm8k,
    gsm8k_target,
    normalize_number,
    numbers_equal,
)
from pytest_llmeval.score.reasoning import split_reasoning
from pytest_llmeval.score.text import exact_match, normalize_text

__all__ = ["Score", "TargetError", "exact", "gsm8k_target", "label", "numeric"]


@dataclass(frozen=True)
class Score:
    """One item's score: `value` in [0, 1], the extracted answer, the extraction method, the
    excerpt it was read from, the reasoning part separated from the answer (if any), and
    optional named components (each in [0, 1] or None where it does not apply)."""

    value: float
    extracted: str | None
    method: str
    span: str = ""
    reasoning: str = ""
    # Named parts of the score, each a metric of its own over the task (its mean, with an
    # interval): e.g. a QA scorer's `value_accuracy` and `ref_overlap`. None: the part does
    # not apply to this item (`na_recall` on an answerable question) and is left out of that
    # part's mean, so a mean over the items it applies to is a recall, not diluted by zeros.
    components: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The score as plain JSON."""
        return asdict(self)


def numeric(response: str, target: str, row: Mapping[str, Any]) -> Score:
    """GSM8K-style numeric answer: the first `#### <n>`, else the last `\\boxed{n}`, else the
    last number (docs/scoring.md); compared by value. Raises TargetError when the target is
    not a number."""
    if normalize_number(str(target)) is None:
        raise TargetError(f"numeric target {target!r} is not a number")
    reasoning, _ = split_reasoning(response)
    found = extract_gsm8k(response)
    right = numbers_equal(found.value, target)
    return Score(1.0 if right else 0.0, found.value, found.method, found.span, reasoning)


def exact(response: str, target: str, row: Mapping[str, Any]) -> Score:
    """Normalised exact match of the final answer (reasoning removed)."""
    reasoning, answer = split_reasoning(response)
    right = exact_match(response, target)
    return Score(1.0 if right else 0.0, normalize_text(answer), "exact", answer[:60], reasoning)


def label(labels: Sequence[str]) -> Callable[[str, str, Mapping[str, Any]], Score]:
    """A scorer that parses one of `labels` from the response (`[invalid]` when none or two
    different ones are found; rules in docs/scoring.md) and compares it with the target label,
    which may be any spelling of one of `labels` ("Non toxic" for "non-toxic"). Raises
    TargetError when the target is none of them."""
    choices = LabelSet(labels)
    if not choices.labels:
        raise ValueError("label() needs at least one label")

    def score_label(response: str, target: str, row: Mapping[str, Any]) -> Score:
        expected = choices.target(str(target))
        reasoning, _ = split_reasoning(response)
        found = choices.parse(response)
        right = found.value == expected
        return Score(1.0 if right else 0.0, found.value, found.method, found.span, reasoning)

    score_label.__name__ = f"label({', '.join(choices.labels)})"
    # The label set, for the task declaration in the report.
    setattr(score_label, "labels", list(choices.labels))  # noqa: B010
    return score_label


BUILTIN_SCORERS: dict[str, Callable[[str, str, Mapping[str, Any]], Score]] = {
    "numeric": numeric,
    "exact": exact,
}
"""Scorers a task can name as a string (`Task(scorer="numeric")`)."""
