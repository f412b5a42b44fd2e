"""Scorers for `Task(scorer=...)`: `numeric`, `exact`, `label(labels)`, `gsm8k_target`, the QA
scorer `qa()` (answer value, cited ids, "is blank"; `pytest_llmeval.score.qa`) and the `Score`
they return. The public name of `pytest_llmeval.score.scorers`, kept stable for
`from pytest_llmeval import scoring` and `from pytest_llmeval.scoring import numeric`."""

from __future__ import annotations

from pytest_llmeval.score.qa import jaccard, parse_qa, qa
from pytest_llmeval.score.scorers import (
    BUILTIN_SCORERS,
    Score,
    TargetError,
    exact,
    gsm8k_target,
    label,
    numeric,
)

__all__ = [
    "BUILTIN_SCORERS",
    "Score",
    "TargetError",
    "exact",
    "gsm8k_target",
    "label",
    "numeric",
    "parse_qa",
    "jaccard",
    "qa",
]
