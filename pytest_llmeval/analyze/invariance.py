"""Batch-invariance metrics of one task x model from its records' `invariance` checks.

An item in the `--llmeval-invariance-check` sample was generated twice: in its batch (or
served from the cache) and alone, with no batch-mates and no padding. The counts say how many
texts and scores the batching changed; `invariance_accuracy_delta` is unbatched minus batched
accuracy over the same checked items, so a positive value means batching cost accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_llmeval.analyze.record import ItemRecord


def summarize_invariance(records: Sequence[ItemRecord]) -> dict[str, Any]:
    """The `invariance_*` metrics; nothing (all None) when no record was checked."""
    checks = [(r, r.invariance) for r in records if r.invariance is not None]
    if not checks:
        return {}
    done = [(r, c) for r, c in checks if c.error is None]
    n = len(done)
    batched = sum(1 for r, _ in done if r.score is not None and bool(r.correct))
    unbatched = sum(1 for _, c in done if c.unbatched_correct)
    return {
        "invariance_checked": n,
        "invariance_errors": len(checks) - n,
        "invariance_changed": sum(1 for _, c in done if c.changed),
        "invariance_score_changed": sum(1 for _, c in done if c.score_changed),
        "invariance_accuracy_delta": (unbatched - batched) / n if n else None,
    }
