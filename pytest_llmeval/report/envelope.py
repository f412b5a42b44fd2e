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

from pytest_llmeval.analyze.compare import ArmComparison
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
from pytest_llmeval.declare.redact import redact
from pytest_llmeval.declare.settings import Settings
from pytest_llmeval.report import runinfo
from pytest_llmeval.report.provenance import ArmProvenance, arms_provenance
from pytest_llmeval.report.runinfo import GitInfo, MachineInfo


@dataclass
class ModelInfo:
    """A model as the run resolved it."""

    __pydantic_config__ = SCHEMA_CONFIG

    name: str
    """The model's name as given with `--model` (alias, Hub id, local dir or `backend:spec`;
    key-like URL query values masked as `***`)."""
    backend: str
    """The backend that runs it: `transformers`, `vllm`, `openai` or `callable`."""
    model_id: str
    """What the backend loads or calls: a Hub id, a local directory, or the backend's own spec
    (e.g. an API model name), key-like URL query values masked as `***`."""
    vram_gb: float | None
    """Estimated GPU memory in GB (bf16 weights plus ~10%), from the built-in alias table or a
    user alias's `vram_gb`; None when unknown."""
    revision: str | None
    """The Hub revision a user alias pins (`revision`); None: the default branch."""

    @classmethod
    def of(cls, spec: ModelSpec) -> ModelInfo:
        """The report's view of a resolved model."""
        model_id = redact(spec.model_id)  # a key in a served model's URL stays off the report
        return cls(spec.name, spec.backend, model_id, spec.vram_gb, spec.revision)


@dataclass
class SettingsInfo:
    """The settings that decided what ran."""

    __pydantic_config__ = SCHEMA_CONFIG

    models: list[ModelInfo]
    """The models evaluated (`--model`, in order), as resolved; the agreement reference is not
    among them."""
    limit: int | None
    """`--limit N`: items kept per task by seeded sampling; None: every row."""
    seed: int
    """`--llmeval-seed`: the seed of `--limit` sampling (default 0)."""
    data_dir: str | None
    """Absolute directory searched first for offline copies of task data (`--llmeval-data-dir`,
    its environment variable or ini); None when not set."""
    batch_size: int | str
    """A number, or `auto` for the backend's default."""
    gates: list[str]
    """Command-line and ini gates (`[task:]metric op value`)."""
    strict: bool
    """`--llmeval-strict`: any wrong item fails the run (plain pytest exit status), not only the
    gates."""

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
    """The process's `CUDA_VISIBLE_DEVICES` at session end (set per xdist worker when GPUs are
    pinned); None when unset."""
    pid: int
    """The process id."""


@dataclass
class ModelResult:
    """One task x model: its metrics and checked gates."""

    __pydantic_config__ = SCHEMA_CONFIG

    metrics: Metrics
    """The metrics of this task x model."""
    gates: list[GateRecord]
    """The gates checked on this task x model, with their verdicts."""


@dataclass
class TaskResult:
    """One task: what it declared, where its rows came from and the result per arm (a model,
    or a model and a prompt variant)."""

    __pydantic_config__ = SCHEMA_CONFIG

    origin: str | None
    """`file:<path>`, `hub:<id>/<config>/<split>` or `generated` (details in `data`)."""
    split: str | None
    """The dataset split the task declares; `test` for hand-written tests; None when the
    declaration is unusable."""
    rows: int | None
    """Rows in the dataset before `--limit` or deselection."""
    models: dict[str, ModelResult]
    """Per arm: the model's name, or for a task with prompt variants `<model>-<variant>`
    (the variant alone with one model); empty when the task ran no items (see `no_data`)."""
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
    arms: dict[str, ArmProvenance] = field(default_factory=dict)
    """Per arm (the keys of `models`): what it ran, i.e. model, backend, identity hash, prompt
    variant and its hash, patch hash, data hash. With the report's `git`, `versions` and
    `machine` that is the arm's full provenance (kept beside `models`, not in it: results
    there, what was evaluated here, so two runs' arms compare without their metrics)."""


@dataclass
class Totals:
    """Item outcomes and failed gates over the whole run."""

    __pydantic_config__ = SCHEMA_CONFIG

    items: int
    """Item records of the run (lines of items.jsonl): every item of every task x model,
    hand-written tests' generations included."""
    passed: int
    """Records whose outcome is `pass`."""
    failed: int
    """Records whose outcome is `fail` (a wrong answer; in agreement runs, labels that disagree)."""
    errors: int
    """Records whose outcome is `error` (the item could not be evaluated, or its reference
    failed)."""
    gates_failed: int
    """Checked gates that fail (`passed` false); gates not evaluated under
    `--llmeval-allow-missing` do not count."""


@dataclass
class RunReport:
    """report.json: one run, its settings and machine, and per task x model the metrics and
    gates. Items are in items.jsonl beside it (one `ItemRecord` per line)."""

    __pydantic_config__ = SCHEMA_CONFIG

    schema_version: int
    """Version of the record and report schemas this report follows (`SCHEMA_VERSION`)."""
    run_id: str
    """`YYYYMMDD-HHMMSS-xxxx`: the run's UTC start time and 4 random hex digits; the default
    report directory is `reports/<run_id>/`."""
    started: str
    """ISO 8601, UTC."""
    finished: str
    """ISO 8601, UTC: when the report was built, at session end."""
    duration_s: float
    """Seconds from the session's start (`started`) to the report's build (`finished`)."""
    argv: list[str]
    """The command line of the pytest process that wrote the report (`sys.argv`), with the
    values of key-like arguments masked as `***` (`--hf-token=***`, `--api-key ***`,
    `?api_key=***` in a URL)."""
    exit_status: int
    """The session's exit status as pytest returned it (0 when every gate held)."""
    versions: dict[str, str | None]
    """python, torch, transformers, datasets, pytest, pytest-xdist and this plugin."""
    git: GitInfo | None
    """The checkout's commit and whether it had uncommitted changes (None outside git)."""
    machine: MachineInfo
    """The machine the report was written on: host, OS, CPU, memory, Python and GPUs."""
    settings: SettingsInfo
    """The settings that decided what ran: models, `--limit`, seed, gates."""
    model_loads: list[ModelLoad]
    """One entry per model and process that created its backend (failed creations included): load
    time, size on disk, peak VRAM, energy meter."""
    workers: dict[str, WorkerInfo]
    """Per process that used a model, by worker id (`gw0`, or `main` without xdist): its GPU
    pinning and pid."""
    tasks: dict[str, TaskResult]
    """Per task (hand-written tests: per test module): its declaration, data origin and the
    result per model."""
    gates: list[GateRecord]
    """Every checked gate of the run, over all tasks and models (each also under its task x
    model)."""
    totals: Totals
    """Counts over the whole run: item records by outcome, and gates that failed."""
    files: dict[str, str]
    """The run's other files, relative to report.json (items, items_parquet, summary, ...)."""
    comparisons: list[ArmComparison] = field(default_factory=list)
    """Per task that two or more arms ran: every arm against the baseline arm on the paired
    items (accuracies, paired delta and interval, McNemar and Holm p-values, wins/losses/ties,
    latency difference, failures, flipped item ids); empty with one arm. The item pairs are
    in comparison.parquet."""
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
    comparisons: Sequence[ArmComparison] = field(default_factory=list)
    """Every arm against the baseline arm, per task (see `RunReport.comparisons`)."""


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
    specs = [*facts.settings.models, *filter(None, [facts.settings.reference])]
    for name, entry in tasks.items():
        entry.arms = arms_provenance(
            name, list(entry.models), facts.tasks.get(name), facts.records, specs, facts.loads
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
        comparisons=list(facts.comparisons),
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
