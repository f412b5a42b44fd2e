"""Gates on a task's own names: score components (`value_accuracy>=0.7`), task-level metrics
(`blank_recall>=0.8`), composites (`wattbot>=0.5`) and label metrics (`macro_f1>=0.6`,
`f1_toxic>=0.5`, `recall_non_toxic>=0.5`).

These names are known only once the task's records are aggregated, so a gate naming one is
accepted when parsed and resolved at check time; a name the task x arm does not have fails
the gate with a reason listing the names it has (a misspelt gate never passes silently).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection

from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.task_metrics import label_slug

Found = tuple[float | None, tuple[float, float] | None, int, str | None]


def task_names(metrics: Metrics) -> dict[str, Found]:
    """Every task-level name of `metrics` -> (value, 95% interval, n, why no value)."""
    found: dict[str, Found] = {}
    for name, value in (metrics.components or {}).items():
        ci = (metrics.components_ci95 or {}).get(name)
        n = (metrics.components_n or {}).get(name, 0)
        found[name] = (
            value,
            _pair(ci),
            n,
            None if value is not None else f"{name}: no item it applies to",
        )
    for label, scores in (metrics.label_metrics or {}).items():
        slug = label_slug(label)
        for kind, n in (("precision", scores.predicted), ("recall", scores.support),
                        ("f1", scores.support + scores.predicted)):  # fmt: skip
            value = getattr(scores, kind)
            why = None if value is not None else f"{kind} of {label!r} is undefined (n={n})"
            found[f"{kind}_{slug}"] = (value, _pair(getattr(scores, f"{kind}_ci95")), n, why)
    if metrics.label_metrics is not None:
        why = None if metrics.macro_f1 is not None else "macro_f1 is undefined"
        found["macro_f1"] = (metrics.macro_f1, _pair(metrics.macro_f1_ci95), metrics.n, why)
    # Declared names after the components and label metrics, never replacing one (a saved
    # run's task metric or composite named like a component: the component keeps the name).
    for name, value in (metrics.task_metrics or {}).items():
        ci = (metrics.task_metrics_ci95 or {}).get(name)
        n = (metrics.task_metrics_n or {}).get(name, 0)
        why = (metrics.task_metrics_reason or {}).get(name) or f"{name} is undefined (n={n})"
        found.setdefault(name, (value, _pair(ci), n, None if value is not None else why))
    for name, value in (metrics.composites or {}).items():
        ci = (metrics.composites_ci95 or {}).get(name)
        why = (metrics.composites_reason or {}).get(name) if value is None else None
        found.setdefault(name, (value, _pair(ci), metrics.n, why and f"composite {name}: {why}"))
    return found


def task_value(metric: str, metrics: Metrics, builtin: Collection[str] = ()) -> Found:
    """`metric`'s value in `metrics`, its interval, its n and why it has no value; a name the
    task does not have gets a reason naming the ones it has (and the closest of `builtin`,
    the gateable `Metrics` fields, when it looks like a misspelling of one)."""
    found = task_names(metrics)
    if metric in found:
        return found[metric]
    close = difflib.get_close_matches(metric, [*builtin, *found], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    mine = ", ".join(found) or "none (no components, task metrics, composites or labels)"
    return (
        None,
        None,
        metrics.n,
        (
            f"unknown metric {metric!r}{hint}; this task's own metrics: {mine}; built-in: "
            "accuracy, mean_score, parse_rate, ... (see docs/fields.md)"
        ),
    )


def _pair(interval: list[float] | None) -> tuple[float, float] | None:
    return (interval[0], interval[1]) if interval else None
