"""What a task declares beyond means over items: task-level metrics and weighted composites.

Both cross xdist inside the task's JSON declaration (the controller never imports the Task),
so they are plain data: a task-level metric is a dict such as `{"kind": "recall", "label":
"is_blank"}` (built by `pytest_llmeval.metrics.recall("is_blank")`), a composite a string
`"0.75*value_accuracy + 0.15*ref_overlap + 0.10*na_recall"`, parsed here without `eval`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

KINDS = ("recall", "precision", "f1", "macro_f1")
"""Task-level metric kinds: per-label recall, precision, F1 over each record's target vs its
extracted answer, and the macro-F1 over the task's labels."""
ITEM_MEANS = ("accuracy", "mean_score", "parse_rate", "error_rate")
"""Standard `Metrics` fields that are means over items, so a composite can use them (their
bootstrap resamples the same items as every other part)."""

_NAME = re.compile(r"[A-Za-z_]\w*")
_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# One term: an optional sign, then `w*name`, `name*w` or a bare `name` (weight 1).
_TERM = re.compile(
    rf"\s*(?P<sign>[-+]?)\s*(?:(?P<w1>{_NUMBER})\s*\*\s*(?P<n1>[A-Za-z_]\w*)"
    rf"|(?P<n2>[A-Za-z_]\w*)\s*\*\s*(?P<w2>{_NUMBER})|(?P<n3>[A-Za-z_]\w*))\s*"
)


class CompositeError(ValueError):
    """A composite expression or a task-level metric cannot be used; the message says why."""


def parse_composite(expression: str) -> list[tuple[float, str]]:
    """`"0.75*a + 0.25*b"` -> `[(0.75, "a"), (0.25, "b")]`: a weighted sum of metric names.

    Terms are `w*name`, `name*w` or `name`, joined by `+` or `-`; a name may appear once.
    Raises CompositeError naming the expression and the expected form.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise CompositeError(
            f"composite {expression!r} must be a weighted sum such as '0.75*accuracy + 0.25*f1'"
        )
    terms: list[tuple[float, str]] = []
    position = 0
    while position < len(expression):
        match = _TERM.match(expression, position)
        # Every term after the first needs its `+` or `-`.
        if match is None or (terms and not match["sign"]) or match.end() == position:
            raise CompositeError(
                f"cannot parse composite {expression!r} at {expression[position:]!r}; expected "
                "a weighted sum of metric names such as '0.75*value_accuracy + 0.25*na_recall'"
            )
        name = match["n1"] or match["n2"] or match["n3"]
        weight = float(match["w1"] or match["w2"] or 1.0)
        if match["sign"] == "-":
            weight = -weight
        if any(name == seen for _, seen in terms):
            raise CompositeError(f"composite {expression!r} names {name!r} twice")
        terms.append((weight, name))
        position = match.end()
    return terms


def check_metric(name: object, spec: object) -> dict[str, Any]:
    """A task-level metric declaration as plain JSON (`{"kind": ..., "label": ...}`); raises
    CompositeError naming the metric and what it takes."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CompositeError(
            f"metric name {name!r} must be a word (letters, digits, _): gates name it"
        )
    if name in ITEM_MEANS:
        raise CompositeError(f"metric name {name!r} is a built-in metric; choose another name")
    if not isinstance(spec, Mapping) or spec.get("kind") not in KINDS:
        raise CompositeError(
            f"metric {name!r} must be built by pytest_llmeval.metrics (recall(label), "
            f"precision(label), f1(label), macro_f1()), got {spec!r}"
        )
    kind = spec["kind"]
    label = spec.get("label")
    if kind == "macro_f1":
        return {"kind": kind, "label": None}
    if not isinstance(label, str) or not label.strip():
        raise CompositeError(f"metric {name!r}: {kind}(label) needs a non-empty label string")
    return {"kind": kind, "label": label}


def check_composites(
    composites: Mapping[str, str], metrics: Mapping[str, Any], components: list[str] | None
) -> None:
    """Raise CompositeError for a composite with a bad name or expression, or one naming a part
    that cannot exist: with `components` known (a scorer that lists them), every name must be
    a component, a task metric, another known part or a built-in item mean."""
    for name, expression in composites.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise CompositeError(f"composite name {name!r} must be a word (letters, digits, _)")
        if name in ITEM_MEANS or name in metrics:
            raise CompositeError(f"composite name {name!r} is already a metric; choose another")
        terms = parse_composite(expression)
        if components is None:
            continue
        known = [*ITEM_MEANS, *metrics, *components, "macro_f1"]
        for _, part in terms:
            if part not in known and not part.startswith(("precision_", "recall_", "f1_")):
                raise CompositeError(
                    f"composite {name!r} = {expression!r} names {part!r}, which is none of "
                    f"the task's metrics; known: {', '.join(known)}"
                )
