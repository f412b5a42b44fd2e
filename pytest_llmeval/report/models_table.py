"""models.csv: one row per model (arm) of the run, the comparison table of a model sweep.

Each column is a name and how to read it (`MODEL_COLUMNS`, then per task `TASK_COLUMNS` as
`<task> <suffix>`), so a new figure is one more entry. Unknown values are empty cells, never
0. Figures that `Metrics` holds per task x model are recomputed over all of the model's
records of the run (latency percentiles, tokens/s, energy, J/token, power: the same functions
as `Metrics`, `analyze/performance.py`, over the union), never averages of per-task figures;
counts and costs are sums over its tasks (a cost only when every task's is known). Hardware
(parameters, peak VRAM, size on disk, loads) comes from the `ModelLoad` records of its model,
as in `Metrics` (`analyze/hardware.py: hardware_summary`); `load_time_s` is the mean time of
one load (the records' summed load times over all their `model_loads`), unlike
`Metrics.load_time_s` and `ModelLoad.load_time_s`, which sum a process's loads: a model the
smoke run loads twice is not shown twice as slow to load.

An accuracy's 95% interval is two numeric columns, `<task> accuracy_low` and
`<task> accuracy_high` (Wilson, as `Metrics.accuracy_ci95`), so the file loads as numbers.

A task's own figures follow its accuracy: each composite (with its bootstrap interval as
`_low`/`_high`), component and task-level metric, as `<task> <name>` (`rag wattbot`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pytest_llmeval.analyze import performance
from pytest_llmeval.analyze.compare import arm_of
from pytest_llmeval.analyze.hardware import ModelLoad, hardware_summary
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.report.envelope import ModelInfo, RunReport

MODELS_CSV = "models.csv"


@dataclass
class ArmFacts:
    """What one row is read from: an arm, its model, loads, records and per-task metrics."""

    arm: str
    model: str
    info: ModelInfo | None
    loads: list[ModelLoad]
    records: list[ItemRecord]
    metrics: dict[str, Metrics]
    speed: dict[str, Any] = field(init=False)
    energy: dict[str, Any] = field(init=False)
    hardware: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.speed = performance.speed(self.records)
        self.energy = performance.energy(self.records)
        self.hardware = hardware_summary(self.model, self.loads)

    def backend_fact(self, key: str) -> Any:
        """A backend fact (`dtype`, `device`, ...) of the first load record that has it."""
        return next((ld.backend_info[key] for ld in self.loads if key in ld.backend_info), None)

    def parameters(self) -> int | None:
        """The parameter count of the first load record that has one."""
        return next((ld.parameters for ld in self.loads if ld.parameters is not None), None)

    def gpu_name(self) -> str | None:
        """The GPU model (transformers: `device_name` on a CUDA device; vLLM: `gpu_name`)."""
        name = self.backend_fact("gpu_name")
        if self.backend_fact("device_type") == "cuda":
            name = self.backend_fact("device_name") or name
        return None if name is None else str(name)

    def load_time_per_load(self) -> float | None:
        """Seconds per load: each process's summed load time over its loads, added up over
        the processes, divided by all their loads (a model smoked, unloaded and loaded again
        would otherwise show twice the time of one loaded once). None when never loaded or a
        load's time is unknown; a failed creation (no load) does not count."""
        loaded = [ld for ld in self.loads if ld.model_loads > 0]
        if not loaded or any(ld.load_time_s is None for ld in loaded):
            return None
        seconds = sum(float(ld.load_time_s or 0.0) for ld in loaded)
        return round(seconds / sum(ld.model_loads for ld in loaded), 6)

    def total(self, read: Callable[[Metrics], Any]) -> Any:
        """The sum over the arm's tasks; None when a task's value is unknown."""
        values = [read(m) for m in self.metrics.values()]
        if not values or any(v is None for v in values):
            return None
        return sum(values)


Column = tuple[str, Callable[[ArmFacts], Any]]
MODEL_COLUMNS: list[Column] = [
    ("model", lambda f: f.arm),
    ("backend", lambda f: f.info.backend if f.info else None),
    ("model_id", lambda f: f.info.model_id if f.info else None),
    ("parameters", ArmFacts.parameters),
    ("dtype", lambda f: f.backend_fact("dtype")),
    ("device", lambda f: f.backend_fact("device")),
    ("gpu_name", ArmFacts.gpu_name),
]
# After the per-task scores: speed, hardware, energy, cost, counts.
RUN_COLUMNS: list[Column] = [
    ("latency_p50_s", lambda f: f.speed["latency_p50"]),
    ("latency_p95_s", lambda f: f.speed["latency_p95"]),
    ("tokens_per_s", lambda f: f.speed["tokens_per_s"]),
    ("peak_vram_gb", lambda f: f.hardware["peak_vram_gb"]),
    ("model_size_gb", lambda f: f.hardware["model_size_gb"]),
    ("load_time_s", ArmFacts.load_time_per_load),
    ("model_loads", lambda f: f.hardware["model_loads"]),
    ("energy_wh", lambda f: f.energy["energy_wh"]),
    ("j_per_token", lambda f: f.energy["j_per_token"]),
    ("avg_power_w", lambda f: f.energy["avg_power_w"]),
    ("peak_power_w", lambda f: f.energy["peak_power_w"]),
    ("cost_usd", lambda f: f.total(lambda m: m.cost_usd)),
    ("items", lambda f: f.total(lambda m: m.n)),
    ("errors", lambda f: f.total(lambda m: m.n_errors)),
    ("cached", lambda f: f.total(lambda m: m.cached)),
]
# Per task `<task> <suffix>`, read from its Metrics (None: the arm did not run the task).
TASK_COLUMNS: list[tuple[str, Callable[[Metrics], Any]]] = [
    ("accuracy", lambda m: m.accuracy),
    ("accuracy_low", lambda m: m.accuracy_ci95[0] if m.accuracy_ci95 else None),
    ("accuracy_high", lambda m: m.accuracy_ci95[1] if m.accuracy_ci95 else None),
]


def arm_facts(report: RunReport, records: Sequence[ItemRecord]) -> list[ArmFacts]:
    """One `ArmFacts` per arm with task records: in the run's model order (as given with
    `--model`), then the order arms first appear (xdist records arrive in any order)."""
    by_arm: dict[str, list[ItemRecord]] = {}
    for record in records:
        if record.task in report.tasks:  # a hand-written test's generations are not a task's
            by_arm.setdefault(arm_of(record), []).append(record)
    infos = {info.name: info for info in report.settings.models}
    order = {name: i for i, name in enumerate(infos)}
    by_arm = dict(
        sorted(by_arm.items(), key=lambda kv: order.get(kv[1][0].model, len(order)))
    )  # stable: arms of one model keep their order
    facts = []
    for arm, mine in by_arm.items():
        model = mine[0].model
        metrics = {
            task: result.models[arm].metrics
            for task, result in report.tasks.items()
            if arm in result.models
        }
        loads = [ld for ld in report.model_loads if ld.model == model]
        facts.append(ArmFacts(arm, model, infos.get(model), loads, mine, metrics))
    return facts


def own_columns(metrics: Sequence[Metrics]) -> list[tuple[str, Callable[[Metrics], Any]]]:
    """A task's own figures, named as its gates name them: each composite with its bootstrap
    interval, then each component and task-level metric (a union over the arms, in first-seen
    order, so every row has the same columns)."""
    columns: list[tuple[str, Callable[[Metrics], Any]]] = []
    for field_name in ("composites", "components", "task_metrics"):
        names = dict.fromkeys(name for m in metrics for name in getattr(m, field_name) or {})
        for name in names:
            columns.append((name, _own(field_name, name)))
            if field_name == "composites":
                columns.append((f"{name}_low", _own(f"{field_name}_ci95", name, 0)))
                columns.append((f"{name}_high", _own(f"{field_name}_ci95", name, 1)))
    return columns


def _own(field_name: str, name: str, bound: int | None = None) -> Callable[[Metrics], Any]:
    def read(metrics: Metrics) -> Any:
        value = (getattr(metrics, field_name) or {}).get(name)
        if bound is None or value is None:
            return value
        return value[bound]

    return read


def model_rows(report: RunReport, records: Sequence[ItemRecord]) -> list[dict[str, Any]]:
    """The rows of models.csv (column -> value, None when unknown)."""
    facts = arm_facts(report, records)
    tasks = list(report.tasks)
    own = {
        task: own_columns([f.metrics[task] for f in facts if task in f.metrics]) for task in tasks
    }
    rows = []
    for fact in facts:
        row = {name: read(fact) for name, read in MODEL_COLUMNS}
        for task in tasks:
            metrics = fact.metrics.get(task)
            for suffix, read_metric in [*TASK_COLUMNS, *own[task]]:
                row[f"{task} {suffix}"] = None if metrics is None else read_metric(metrics)
        row.update({name: read(fact) for name, read in RUN_COLUMNS})
        rows.append(row)
    return rows


def write_models_csv(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    """Write `model_rows` as models.csv beside report.json; False (no file) without rows."""
    if not rows:
        return False
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({name: _cell(value) for name, value in row.items()})
    return True


# summary.md's short form: the columns a reader compares first (the rest are in the csv).
SHORT = ("parameters", "accuracy", "latency_p50_s", "tokens_per_s", "peak_vram_gb",
         "load_time_s", "energy_wh")  # fmt: skip


def models_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A "## Models" section for summary.md with the short columns, for 2+ models; else ""."""
    if len(rows) < 2:
        return ""
    columns = ["model"] + [c for c in rows[0] if c.endswith(SHORT) and c != "model"]
    table = [[_cell(row[c]) for c in columns] for row in rows]
    text = tabulate(table, headers=columns, tablefmt="github")
    return f"\n## Models (all columns: models.csv)\n\n{text}\n"


def _cell(value: Any) -> Any:
    """Empty for unknown; floats to 6 decimals (the table is for reading and plotting)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 6)
    return value
