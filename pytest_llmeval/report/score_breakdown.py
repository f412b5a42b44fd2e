"""A task's own figures for people: score components, task-level metrics, composites and,
for classification tasks, per-label precision/recall/F1 and the confusion matrix.

summary.md gets the full tables; the terminal one short line per task x arm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tabulate import tabulate

from pytest_llmeval.analyze.composite import CompositeError, parse_composite
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.report.envelope import RunReport

Key = tuple[str, str]


def _figures(m: Metrics) -> list[tuple[str, str, float | None, list[float] | None, int, str]]:
    """(name, kind, value, interval, n, why no value) of every own figure, composites first."""
    rows = [
        (name, "composite", value, (m.composites_ci95 or {}).get(name), m.n,
         (m.composites_reason or {}).get(name, ""))
        for name, value in (m.composites or {}).items()
    ]  # fmt: skip
    rows += [
        (name, "task metric", value, (m.task_metrics_ci95 or {}).get(name),
         (m.task_metrics_n or {}).get(name, 0), "" if value is not None else "undefined")
        for name, value in (m.task_metrics or {}).items()
    ]  # fmt: skip
    if m.label_metrics is not None:
        rows.append(("macro_f1", "label metric", m.macro_f1, m.macro_f1_ci95, m.n, ""))
    rows += [
        (name, "component", value, (m.components_ci95 or {}).get(name),
         (m.components_n or {}).get(name, 0), "" if value is not None else "no item applies")
        for name, value in (m.components or {}).items()
    ]  # fmt: skip
    return rows


def breakdown_table(summaries: Mapping[Key, Metrics], tablefmt: str = "github") -> str:
    """One row per task x arm x own figure; empty when no task has one."""
    rows = [
        [task, model, name, kind, _num(value) if value is not None else f"- ({why})",
         _ci(ci), n]
        for (task, model), m in summaries.items()
        for name, kind, value, ci, n, why in _figures(m)
    ]  # fmt: skip
    if not rows:
        return ""
    headers = ["task", "model", "metric", "kind", "value", "95% CI", "n"]
    return tabulate(rows, headers, tablefmt, disable_numparse=True)


def terminal_lines(summaries: Mapping[Key, Metrics], most: int = 6) -> list[str]:
    """`task [model]: wattbot 0.688 (0.500-0.875), na_recall 0.500 (...), ...`: at most `most`
    figures per task x arm, composites first (the full table is in summary.md)."""
    lines = []
    for (task, model), m in summaries.items():
        found = _figures(m)
        if not found:
            continue
        shown = [
            f"{name} {_num(value)}" + (f" ({_ci(ci)})" if ci else "")
            if value is not None
            else f"{name} -"
            for name, _, value, ci, _, _ in found[:most]
        ]
        more = f", +{len(found) - most} in summary.md" if len(found) > most else ""
        lines.append(f"{task} [{model}]: {', '.join(shown)}{more}")
    return lines


def composite_legend(report: RunReport) -> list[str]:
    """One line per declared composite: its formula and what its weights sum to."""
    lines = []
    for task, result in report.tasks.items():
        declared = result.declaration
        for name, expression in (declared.composites if declared else {}).items():
            try:
                total = sum(weight for weight, _ in parse_composite(expression))
            except CompositeError:
                continue
            lines.append(f"- {task}: {name} = {expression} (weights sum to {total:g})")
    return lines


def label_sections(summaries: Mapping[Key, Metrics]) -> list[str]:
    """Markdown per classification task x arm: precision/recall/F1 per label, the confusion
    matrix (rows: target label; columns: predicted, `[invalid]`, `[error]`)."""
    lines: list[str] = []
    for (task, model), m in summaries.items():
        if not m.label_metrics:
            continue
        scores = [
            [label, _with(s.precision, s.precision_ci95), _with(s.recall, s.recall_ci95),
             _with(s.f1, s.f1_ci95), s.support, s.predicted]
            for label, s in m.label_metrics.items()
        ]  # fmt: skip
        headers = ["label", "precision", "recall", "F1", "support", "predicted"]
        lines += [
            "",
            f"### {task} [{model}]: macro-F1 {_with(m.macro_f1, m.macro_f1_ci95)}",
            "",
            tabulate(scores, headers, "github", disable_numparse=True),
        ]
        confusion = m.confusion or {}
        columns = list(next(iter(confusion.values()), {}))
        table = [
            [f"target {row}", *(counts[c] for c in columns)] for row, counts in confusion.items()
        ]
        lines += ["", tabulate(table, ["", *columns], "github", disable_numparse=True)]
    return lines


def _with(value: float | None, ci: Sequence[float] | None) -> str:
    if value is None:
        return "-"
    return _num(value) + (f" ({_ci(ci)})" if ci else "")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(interval: Sequence[float] | None) -> str:
    return "-" if not interval else f"{interval[0]:.3f}-{interval[1]:.3f}"
