"""The run report (report.json), defined and built here once.

`build_report` turns what the controller gathered (records, task facts, model loads, workers,
checked gates) into a `RunReport`; `pytest_llmeval_update_report` implementations may edit it
(e.g. put a patch id in `metadata`) before `write_report` saves it. Saved-run tools read it
back with `pytest_llmeval.report.schema.load_report`. Pure: no pytest, no torch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.analyze.gates import GateRecord, GateResult
from pytest_llmeval.analyze.hardware import ModelLoad
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import (
    SCHEMA_CONFIG,
    SCHEMA_VERSION,
    DataOrigin,
    ItemRecord,
    TaskDeclaration,
    TaskInfo,
)
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.settings import Settings
from pytest_llmeval.report import runinfo
from pytest_llmeval.report.runinfo import GitInfo, MachineInfo


@dataclass
class ModelInfo:
    """A model as the run resolved it."""

    __pydantic_config__ = SCHEMA_CONFIG

    name: str
    backend: str
    model_id: str
    vram_gb: float | None
    revision: str | None

    @classmethod
    def of(cls, spec: ModelSpec) -> ModelInfo:
        """The report's view of a resolved model."""
        return cls(spec.name, spec.backend, spec.model_id, spec.vram_gb, spec.revision)


@dataclass
class SettingsInfo:
    """The settings that decided what ran."""

    __pydantic_config__ = SCHEMA_CONFIG

    models: list[ModelInfo]
    limit: int | None
    seed: int
    data_dir: str | None
    batch_size: int | str
    """A number, or `auto` for the backend's default."""
    gates: list[str]
    """Command-line and ini gates (`[task:]metric op value`)."""
    strict: bool

    @classmethod
    def of(cls, settings: Settings) -> SettingsInfo:
        """The report's view of the run settings."""
        return cls(
            models=[ModelInfo.of(spec) for spec in settings.models],
            limit=settings.limit,
            seed=settings.seed,
            data_dir=str(settings.data_dir) if settings.data_dir else None,
            batch_size=settings.batch_size or "auto",
            gates=[g.text if g.task == "*" else f"{g.task}:{g.text}" for g in settings.gates],
            strict=settings.strict,
        )


@dataclass
class WorkerInfo:
    """One process that ran items: its GPU pinning and pid."""

    __pydantic_config__ = SCHEMA_CONFIG

    cuda_visible_devices: str | None
    pid: int


@dataclass
class ModelResult:
    """One task x model: its metrics and checked gates."""

    __pydantic_config__ = SCHEMA_CONFIG

    metrics: Metrics
    gates: list[GateRecord]


@dataclass
class TaskResult:
    """One task: what it declared, where its rows came from and the result per model."""

    __pydantic_config__ = SCHEMA_CONFIG

    origin: str | None
    """`file:<path>`, `hub:<id>/<config>/<split>` or `generated` (details in `data`)."""
    split: str | None
    rows: int | None
    """Rows in the dataset before `--limit` or deselection."""
    models: dict[str, ModelResult]
    """Per model; empty when the task ran no items (see `no_data`)."""
    data: DataOrigin | None = None
    """Where the rows came from, decided once per run, and the SHA-256 of the rows used."""
    declaration: TaskDeclaration | None = None
    """The task's prompt templates, few-shot hash, generation settings, scorer and options,
    label set and gates (None for groups of hand-written tests)."""
    no_data: str | None = None
    """Why the task ran no items (data missing, broken declaration); None when it ran."""
    data_conflict: str | None = None
    """xdist: set when workers loaded different rows for this task (source or content hash
    differ); the task's gates then fail and so does the run."""


@dataclass
class Totals:
    """Item outcomes and failed gates over the whole run."""

    __pydantic_config__ = SCHEMA_CONFIG

    items: int
    passed: int
    failed: int
    errors: int
    gates_failed: int


@dataclass
class RunReport:
    """report.json: one run, its settings and machine, and per task x model the metrics and
    gates. Items are in items.jsonl beside it (one `ItemRecord` per line)."""

    __pydantic_config__ = SCHEMA_CONFIG

    schema_version: int
    run_id: str
    started: str
    """ISO 8601, UTC."""
    finished: str
    duration_s: float
    argv: list[str]
    exit_status: int
    """The session's exit status as pytest returned it (0 when every gate held)."""
    versions: dict[str, str | None]
    """python, torch, transformers, datasets, pytest, pytest-xdist and this plugin."""
    git: GitInfo | None
    """The checkout's commit and whether it had uncommitted changes (None outside git)."""
    machine: MachineInfo
    settings: SettingsInfo
    model_loads: list[ModelLoad]
    workers: dict[str, WorkerInfo]
    tasks: dict[str, TaskResult]
    gates: list[GateRecord]
    totals: Totals
    files: dict[str, str]
    """The run's other files, relative to report.json (items, items_parquet, summary, ...)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form facts added by `pytest_llmeval_update_report` hooks (a patch id, a dataset
    revision): kept as given."""


@dataclass
class RunFacts:
    """What the controller gathered during a session, for `build_report`."""

    run_id: str
    started_iso: str
    started: float
    settings: Settings
    records: Sequence[ItemRecord]
    tasks: Mapping[str, TaskInfo]
    loads: Sequence[ModelLoad]
    workers: Mapping[str, WorkerInfo]
    summaries: Mapping[tuple[str, str], Metrics]
    gate_results: Sequence[GateResult]
    data_conflicts: Mapping[str, str] = field(default_factory=dict)
    """Per task: why workers' rows differ (see `TaskResult.data_conflict`)."""


def build_report(facts: RunFacts, exit_status: int, rootdir: Path) -> RunReport:
    """The run report: metadata of this process and machine plus the gathered facts."""
    tasks: dict[str, TaskResult] = {}
    for (task, model), metrics in facts.summaries.items():
        entry = tasks.setdefault(task, _task_result(facts.tasks.get(task)))
        entry.data_conflict = facts.data_conflicts.get(task)
        entry.models[model] = ModelResult(
            metrics=metrics,
            gates=[
                g.as_record() for g in facts.gate_results if g.task == task and g.model == model
            ],
        )
    for name, info in facts.tasks.items():
        if info.no_data is not None and name not in tasks:
            tasks[name] = _task_result(info)
    records = facts.records
    return RunReport(
        schema_version=SCHEMA_VERSION,
        run_id=facts.run_id,
        started=facts.started_iso,
        finished=runinfo.now_iso(),
        duration_s=round(time.time() - facts.started, 3),
        argv=runinfo.argv(),
        exit_status=int(exit_status),
        versions=runinfo.versions(),
        git=runinfo.git_commit(rootdir),
        machine=runinfo.machine(),
        settings=SettingsInfo.of(facts.settings),
        model_loads=list(facts.loads),
        workers=dict(facts.workers),
        tasks=tasks,
        gates=[g.as_record() for g in facts.gate_results],
        totals=Totals(
            items=len(records),
            passed=sum(r.outcome == "pass" for r in records),
            failed=sum(r.outcome == "fail" for r in records),
            errors=sum(r.outcome == "error" for r in records),
            gates_failed=sum(g.passed is False for g in facts.gate_results),
        ),
        files={"items": "items.jsonl"},
    )


def _task_result(info: TaskInfo | None) -> TaskResult:
    """A task's entry before its per-model results are added."""
    if info is None:
        return TaskResult(origin=None, split=None, rows=None, models={})
    return TaskResult(
        origin=info.origin,
        split=info.split,
        rows=info.rows,
        models={},
        data=info.data,
        declaration=info.declaration,
        no_data=info.no_data,
    )
