"""Task-level metrics for `Task(metrics=...)`: figures over a task's records, not means over
items, each with a bootstrap interval and usable in gates by its name::

    from pytest_llmeval import Task, metrics

    qa = Task(
        ...,
        metrics={"blank_recall": metrics.recall("is_blank")},
        composites={"wattbot": "0.75*value_accuracy + 0.15*ref_overlap + 0.10*na_recall"},
        gates=["blank_recall >= 0.8", "wattbot >= 0.5"],
    )

Each compares every record's target with the answer the scorer extracted. They return plain
dicts: the declaration crosses to the xdist controller as JSON, never as code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["f1", "macro_f1", "precision", "recall"]


def recall(label: str) -> dict[str, Any]:
    """Of the items whose target is `label`, the share whose extracted answer is `label` (an
    errored item counts as a miss); undefined (None) when no target is `label`."""
    return {"kind": "recall", "label": label}


def precision(label: str) -> dict[str, Any]:
    """Of the items whose extracted answer is `label`, the share whose target is `label`;
    undefined when nothing was answered `label`."""
    return {"kind": "precision", "label": label}


def f1(label: str) -> dict[str, Any]:
    """F1 of `label`: 2 x hits / (targets of `label` + answers `label`)."""
    return {"kind": "f1", "label": label}


def macro_f1() -> dict[str, Any]:
    """The mean F1 over the task's labels (its scorer's label set, else the targets seen)."""
    return {"kind": "macro_f1", "label": None}
