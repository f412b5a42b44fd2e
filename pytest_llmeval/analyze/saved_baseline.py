"""A run against a saved run (`--llmeval-baseline PATH`): "did this change make the model worse
than on main?".

Each task x arm of this run is paired item by item with the saved run's arm of the same name
(or the saved run's only arm of that task) and compared by the in-run arm machinery
(`compare.compare_arms`), so the figures are those of an arm comparison: the paired delta with
Newcombe's interval and McNemar's p. `regression` is the largest drop the interval allows
(minus its lower bound): the gate `regression<=0.02` holds when the drop is below 2 points at
95% confidence (non-inferiority). Items only one side ran are counted, never dropped silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pytest_llmeval.analyze.compare import ArmComparison, arm_of, compare_arms
from pytest_llmeval.analyze.record import ItemRecord

SAVED = "@saved"
"""The arm name the saved run's records take while compared (no real arm can hold `@`)."""


def against_saved(
    current: Sequence[ItemRecord], saved: Sequence[ItemRecord]
) -> dict[tuple[str, str], ArmComparison]:
    """Per (task, arm) of `current`: its comparison with the matching arm of `saved`."""
    saved_arms: dict[str, dict[str, list[ItemRecord]]] = {}
    for record in saved:
        if record.source == "task":
            saved_arms.setdefault(record.task, {}).setdefault(arm_of(record), []).append(record)
    mine: dict[tuple[str, str], list[ItemRecord]] = {}
    for record in current:
        if record.source == "task":
            mine.setdefault((record.task, arm_of(record)), []).append(record)
    found = {}
    for (task, arm), records in mine.items():
        arms = saved_arms.get(task, {})
        match = arm if arm in arms else next(iter(arms)) if len(arms) == 1 else None
        if match is None:
            continue
        base = [dataclasses.replace(r, arm=SAVED, model=SAVED) for r in arms[match]]
        compared = compare_arms([*base, *records], SAVED, [SAVED, arm])
        if compared:
            found[(task, arm)] = dataclasses.replace(compared[0], baseline=match)
    return found


def baseline_fields(comparison: ArmComparison | None, run: str) -> dict[str, Any]:
    """The `Metrics` fields of one task x arm against the saved run `run` (None: the saved
    run has no matching arm for it)."""
    if comparison is None:
        return {"baseline_run": run, "baseline_reason": "the saved run has no matching arm"}
    low = comparison.delta_ci95[0] if comparison.delta_ci95 else None
    return {
        "baseline_run": run,
        "baseline_arm": comparison.baseline,
        "baseline_n": comparison.n,
        "baseline_lacks": comparison.candidate_only,
        "baseline_only": comparison.baseline_only,
        "baseline_accuracy": comparison.baseline_accuracy,
        "baseline_delta": comparison.delta,
        "baseline_delta_ci95": comparison.delta_ci95,
        "baseline_p_value": comparison.p_value_mcnemar,
        "regression": None if low is None else -low,
        "baseline_wins": comparison.wins,
        "baseline_losses": comparison.losses,
    }
