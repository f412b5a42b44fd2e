"""pytest-html integration: each item's prompt, response, extracted answer and target in its
row's extras, and the gate and metric summary (with the arm comparison, when a task ran two or
more arms) on top of the report.

Used only when pytest-html is installed and `--html` is given; the extras are plain dicts
(pytest-html's format), so they cross the xdist channel with the report.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmeval.analyze.compare import ArmComparison, Pair
from pytest_llmeval.analyze.gates import GateResult
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import ItemRecord, to_json
from pytest_llmeval.report.compare_summary import comparison_table, flipped_table, legend

FLIPS_SHOWN = 50
"""Flipped items listed in the HTML report (all of them are in comparison.parquet)."""

_FIELDS = (
    ("prompt", "Prompt (as rendered)"),
    ("response", "Response"),
    ("extracted", "Extracted"),
    ("target", "Target"),
    ("error", "Error"),
    ("reference_raw_response", "Reference response"),
)


def item_extras(record: ItemRecord) -> list[dict[str, Any]]:
    """One HTML extra with the item's prompt, response, extracted answer and target."""
    parts = []
    values = to_json(record)
    if record.comparison is not None:
        values["reference_raw_response"] = record.comparison.reference_raw_response
    for key, title in _FIELDS:
        value = values.get(key)
        if value is None:
            continue
        text = html.escape(str(value))
        parts.append(f"<div><b>{title}</b><pre style='white-space:pre-wrap'>{text}</pre></div>")
    facts = ", ".join(
        f"{name}={values[name]}"
        for name in ("score", "method", "latency_s", "tokens_in", "tokens_out", "energy_j")
        if values[name] is not None
    )
    if facts:
        parts.append(f"<div>{html.escape(facts)}</div>")
    return [
        {"name": "llmeval", "format_type": "html", "content": "".join(parts),
         "mime_type": None, "extension": None}
    ]  # fmt: skip


def summary_html(
    summaries: Mapping[tuple[str, str], Metrics],
    gates: Sequence[GateResult],
    comparisons: Sequence[ArmComparison] = (),
    pairs: Mapping[tuple[str, str], Sequence[Pair]] | None = None,
) -> str:
    """The gates and per task x model metrics as small HTML tables, then the arm comparison
    (`comparison_html`) when there is one."""
    gate_rows = "".join(
        f"<tr><td>{html.escape(g.task)}</td><td>{html.escape(g.model)}</td>"
        f"<td>{html.escape(g.gate.text)}</td><td>{g.verdict}</td>"
        f"<td>{html.escape(g.describe())}</td></tr>"
        for g in gates
    )
    metric_rows = "".join(
        f"<tr><td>{html.escape(task)}</td><td>{html.escape(model)}</td><td>{m.n}</td>"
        f"<td>{_num(m.accuracy)}</td><td>{_ci(m.accuracy_ci95)}</td>"
        f"<td>{m.n_errors}</td><td>{_num(m.latency_p50)}</td>"
        f"<td>{_num(m.tokens_per_s)}</td><td>{_num(m.energy_wh)}</td></tr>"
        for (task, model), m in summaries.items()
    )
    return (
        "<h2>llmeval gates</h2><table><tr><th>task</th><th>model</th><th>gate</th>"
        f"<th>verdict</th><th>detail</th></tr>{gate_rows}</table>"
        "<h2>llmeval metrics</h2><table><tr><th>task</th><th>model</th><th>n</th>"
        "<th>accuracy</th><th>95% CI</th><th>errors</th><th>p50 s</th><th>tok/s</th>"
        f"<th>energy Wh</th></tr>{metric_rows}</table>"
    ) + comparison_html(comparisons, pairs or {})


def comparison_html(
    comparisons: Sequence[ArmComparison], pairs: Mapping[tuple[str, str], Sequence[Pair]]
) -> str:
    """The summary's arm comparison as HTML: the table of every arm against the baseline arm,
    its legend and the flipped items side by side (responses up to 200 characters); empty
    when no task ran two arms. Every cell is escaped (tabulate's `html` format does it)."""
    if not comparisons:
        return ""
    flips, total = flipped_table(pairs, limit=FLIPS_SHOWN, width=200, tablefmt="html")
    shown = f"first {FLIPS_SHOWN} of {total}" if total > FLIPS_SHOWN else f"all {total}"
    parts = [
        "<h2>llmeval arm comparison</h2>",
        "<p>Arms compared with the baseline arm (paired by item):</p>",
        comparison_table(comparisons, tablefmt="html"),
        f"<p>{html.escape(legend())}</p>",
    ]
    if total:
        parts += [f"<h3>Flipped items ({shown}; all in comparison.parquet)</h3>", flips]
    return "".join(parts)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _ci(interval: Sequence[float] | None) -> str:
    return "-" if not interval else f"{interval[0]:.3f}-{interval[1]:.3f}"
