"""The numbers `pytest-llmeval plot` draws, as one table: a row per run x task x arm.

Every figure is rendered from these rows only, so what a figure shows can be checked against
report.json without reading pixels. A fact a run does not have (no parameter count for an API
model, no GPU energy on the CPU, no price for a local model) stays None with the reason in
`missing`: a figure leaves that point out and says so, it never draws a zero for unknown.
Pure: no matplotlib, no model.
"""

from __future__ import annotations

import csv
import re
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pytest_llmeval.analyze.compare import arm_of
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.performance import BATCH_WALL_PREFIX, generated
from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.analyze.stats import mean, wilson_interval
from pytest_llmeval.cli.runs import RunError, SavedRun, run_names

LOCAL_BACKENDS = ("transformers", "vllm")
"""Backends whose weights run on this machine: squares in the figures; the rest (an
OpenAI-compatible server, a callable pipeline) are API models: circles."""

# "SmolLM2-135M", "qwen7b", "Qwen2.5-1.5B-Instruct": a number directly followed by M or B,
# not inside a longer word (the "2" of "SmolLM2" is no size).
_SIZE_IN_NAME = re.compile(r"(?<![A-Za-z0-9.])(?:[A-Za-z]+)?(\d+(?:\.\d+)?)([mb])(?![a-z])", re.I)


@dataclass
class PlotRow:
    """One run x task x arm with every value a figure may plot (None: not known)."""

    run: str
    """The run folder's name."""
    task: str
    arm: str
    """The arm as in report.json `tasks.<task>.models`."""
    label: str
    """How the figures name the point: the arm, or `run/arm` when arm names repeat."""
    model: str
    backend: str | None
    local: bool
    """Squares (local weights) or circles (API / callable) in the figures."""
    metric: str
    """The plotted score's Metrics field (`--metric`, default accuracy)."""
    score: float | None
    score_low: float | None
    """Lower end of the metric's 95% interval (`<metric>_ci95`); None without one."""
    score_high: float | None
    n: int
    n_correct: int
    generated: int
    parameters: int | None
    parameters_source: str | None
    """`model_loads` (the loaded model's count) or `name` (read from the alias or model id)."""
    latency_mean_s: float | None
    """Mean own latency (s) of the items generated in this run (batch-wall copies left out)."""
    energy_wh_per_item: float | None
    """`energy_wh / generated` (GPU energy)."""
    cost_usd_per_item: float | None
    """`cost_usd / generated`."""
    cost_usd: float | None
    missing: dict[str, str] = field(default_factory=dict)
    """Per value left None: why (`parameters`, `latency`, `energy`, `cost`)."""

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-able form (the `missing` reasons joined), one CSV line."""
        row = asdict(self)
        row["missing"] = "; ".join(f"{k}: {v}" for k, v in self.missing.items())
        return row


COLUMNS = [f.name for f in fields(PlotRow)]


def parameters_from_name(*names: str) -> int | None:
    """A parameter count written in a model's alias or id (`qwen7b` 7e9, `SmolLM2-135M`
    135e6); None when no name carries one."""
    for name in names:
        # The repo part of a Hub id, without a served model's `@url`; the first size wins
        # ("Qwen2.5-7B-Instruct-1M": 7B parameters, a 1M context).
        found = _SIZE_IN_NAME.findall(name.split("@", 1)[0].rsplit("/", 1)[-1])
        if found:
            number, unit = found[0]
            return round(float(number) * (1e9 if unit.lower() == "b" else 1e6))
    return None


def _arm_model(saved: SavedRun, task: str, arm: str) -> tuple[str, str | None, str]:
    """(model name, backend, model id) of one arm: its provenance, else its records and the
    run's model list (reports from before arm provenance)."""
    info = saved.report.tasks[task]
    prov = info.arms.get(arm)
    model = (
        prov.model
        if prov
        else next((r.model for r in saved.records if r.task == task and arm_of(r) == arm), arm)
    )
    spec = next((m for m in saved.report.settings.models if m.name == model), None)
    backend = prov.backend if prov and prov.backend else (spec.backend if spec else None)
    model_id = (prov.model_id if prov else None) or (spec.model_id if spec else model)
    return model, backend, model_id


def _parameters(saved: SavedRun, model: str, model_id: str) -> tuple[int | None, str | None]:
    counts = [
        load.parameters
        for load in saved.report.model_loads
        if load.model == model and load.parameters
    ]
    if counts:
        return max(counts), "model_loads"
    from_name = parameters_from_name(model, model_id)
    return (from_name, "name") if from_name else (None, None)


def mean_latency(records: Sequence[ItemRecord]) -> float | None:
    """Mean of the items' own latencies (s) over the items generated in this run; items that
    have only their batch's wall time are left out, as for `latency_p50`."""
    own = [
        float(r.latency_s)
        for r in generated(records)
        if r.latency_s is not None and not (r.latency_method or "").startswith(BATCH_WALL_PREFIX)
    ]
    return mean(own)


def _score(metrics: Metrics, metric: str) -> tuple[float | None, float | None, float | None]:
    value = getattr(metrics, metric)
    if value is not None and not isinstance(value, int | float):
        raise RunError(f"--metric {metric}: not a number in the report; try accuracy or mean_score")
    interval = getattr(metrics, f"{metric}_ci95", None)
    low, high = (interval[0], interval[1]) if interval else (None, None)
    return value, low, high


def plot_rows(runs: Sequence[SavedRun], metric: str = "accuracy") -> list[PlotRow]:
    """The table of `runs`: one row per run x task x arm, in report order."""
    if metric not in {f.name for f in fields(Metrics)}:
        raise RunError(f"--metric {metric}: no such metric in report.json; try accuracy")
    rows: list[PlotRow] = []
    names = run_names(runs)
    for saved, name in zip(runs, names, strict=True):
        for task, info in saved.report.tasks.items():
            for arm, result in info.models.items():
                rows.append(_row(saved, name, task, arm, result.metrics, metric))
    runs_of: dict[str, set[str]] = {}
    for row in rows:
        runs_of.setdefault(row.arm, set()).add(row.run)
    for row in rows:
        # One arm name in two runs would be two points with one label: name the run too.
        row.label = f"{row.run}/{row.arm}" if len(runs_of[row.arm]) > 1 else row.arm
    return rows


def _row(saved: SavedRun, run: str, task: str, arm: str, m: Metrics, metric: str) -> PlotRow:
    model, backend, model_id = _arm_model(saved, task, arm)
    records = [r for r in saved.records if r.task == task and arm_of(r) == arm]
    score, low, high = _score(m, metric)
    parameters, source = _parameters(saved, model, model_id)
    missing: dict[str, str] = {}
    if parameters is None:
        missing["parameters"] = "no parameter count in model_loads or the model's name"
    latency = mean_latency(records)
    if latency is None:
        missing["latency"] = m.speed_reason or "no item latency measured"
    energy = m.energy_wh / m.generated if m.energy_wh is not None and m.generated else None
    if energy is None:
        missing["energy"] = m.energy_reason or "no items generated"
    cost = m.cost_usd / m.generated if m.cost_usd is not None and m.generated else None
    if cost is None:
        missing["cost"] = m.cost_reason or "no items generated"
    return PlotRow(
        run=run, task=task, arm=arm, label=arm, model=model, backend=backend,
        local=backend in LOCAL_BACKENDS, metric=metric, score=score, score_low=low,
        score_high=high, n=m.n, n_correct=m.n_correct, generated=m.generated,
        parameters=parameters, parameters_source=source, latency_mean_s=latency,
        energy_wh_per_item=energy, cost_usd_per_item=cost, cost_usd=m.cost_usd,
        missing=missing,
    )  # fmt: skip


@dataclass
class Ranked:
    """One run x arm over all its tasks: the ranking bar's value."""

    label: str
    local: bool
    score: float | None
    low: float | None
    high: float | None
    tasks: int


def ranking(rows: Sequence[PlotRow]) -> list[Ranked]:
    """Per run x arm, best first: with one task its metric and interval; over several tasks
    the item-weighted mean of the metric (accuracy: pooled correct / n with a Wilson 95%
    interval; another metric: no interval). Arms without a score come last."""
    groups: dict[tuple[str, str], list[PlotRow]] = {}
    for row in rows:
        groups.setdefault((row.run, row.label), []).append(row)
    ranked = []
    for (_, label), members in groups.items():
        scored = [r for r in members if r.score is not None]
        first = members[0]
        if len(members) == 1:
            entry = Ranked(label, first.local, first.score, first.score_low, first.score_high, 1)
        elif not scored:
            entry = Ranked(label, first.local, None, None, None, len(members))
        elif first.metric == "accuracy":
            correct, n = sum(r.n_correct for r in members), sum(r.n for r in members)
            low, high = wilson_interval(correct, n)
            entry = Ranked(label, first.local, correct / n, low, high, len(members))
        else:
            total = sum(r.n for r in scored)
            value = sum(float(r.score or 0.0) * r.n for r in scored) / total if total else None
            entry = Ranked(label, first.local, value, None, None, len(members))
        ranked.append(entry)
    return sorted(ranked, key=lambda r: (r.score is None, -(r.score or 0.0)))


Cell = tuple[float | None, float | None, float | None]
"""A score with the ends of its interval (None: unknown)."""


def per_task(rows: Sequence[PlotRow]) -> dict[str, dict[str, Cell]]:
    """The per-task summary: per task, per point label, (score, low, high); a label that did
    not run a task has no entry there."""
    table: dict[str, dict[str, Cell]] = {}
    for row in rows:
        table.setdefault(row.task, {})[row.label] = (row.score, row.score_low, row.score_high)
    return table


BREAKDOWN = ("accuracy", "accuracy_strict", "accuracy_answered", "mean_score", "parse_rate")
"""The metrics of the score-breakdown figure, each drawn where any row has it."""


def breakdown(runs: Sequence[SavedRun], rows: Sequence[PlotRow]) -> dict[str, list[float | None]]:
    """Per breakdown metric that any row has: its value per row (rows' order), None where a
    row lacks it."""
    metrics = {
        (name, task, arm): result.metrics
        for s, name in zip(runs, run_names(runs), strict=True)
        for task, info in s.report.tasks.items()
        for arm, result in info.models.items()
    }
    table = {
        name: [getattr(metrics[(r.run, r.task, r.arm)], name) for r in rows] for name in BREAKDOWN
    }
    return {name: values for name, values in table.items() if any(v is not None for v in values)}


def left_out(rows: Sequence[PlotRow], *keys: str) -> str | None:
    """The footnote of a figure that needs `keys`: each point left out and why; None when
    every point is in."""
    left = [
        f"{r.label} [{r.task}] ({'; '.join(r.missing[k] for k in keys if k in r.missing)})"
        for r in rows
        if any(k in r.missing for k in keys)
    ]
    return "not measured for: " + "; ".join(left) if left else None


def fit_footnote(footnote: str, lines: int = 8) -> str:
    """The footnote wrapped to a figure's width; past `lines` lines cut, pointing to the
    table (stdout has it whole)."""
    wrapped = textwrap.wrap(footnote, 130)
    if len(wrapped) > lines:
        wrapped = [*wrapped[: lines - 1], "... (all of them in plot_data.csv, column missing)"]
    return "\n".join(wrapped)


def write_table(rows: Sequence[PlotRow], path: Path) -> None:
    """The plotted numbers, one CSV line per run x task x arm (unknown values empty)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(row.as_dict() for row in rows)
