"""The report.json of an ensemble run (`pytest-llmeval ensemble`), built from its records and
its members' reports with the library's own aggregation and gates.

Per task, the metrics come from `summarize` over the ensemble's records, as a pytest run's
would; the task's declaration, rows and data origin are those of the first member that ran
it (its declared gates are checked on the ensemble's metrics, so `regate` and the exit
status follow the usual rule). No model was loaded and nothing was generated: no model
loads, no workers, and the speed and energy figures are null with their reason. The single
model is the ensemble itself, backend `ensemble`; `metadata.ensemble` names the strategy and
every member (folder, run id, models and arms).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.analyze.aggregate import summarize
from pytest_llmeval.analyze.gates import check_run
from pytest_llmeval.analyze.record import SCHEMA_VERSION, ItemRecord
from pytest_llmeval.report import runinfo
from pytest_llmeval.report.envelope import (
    ModelInfo,
    ModelResult,
    RunReport,
    SettingsInfo,
    TaskResult,
    Totals,
)
from pytest_llmeval.report.provenance import ArmProvenance

BACKEND = "ensemble"
"""The backend named for the ensemble's model in its report (no backend ran)."""


@dataclass
class Member:
    """One member run as the ensemble's provenance names it."""

    run: str
    """The member's folder as given."""
    run_id: str
    models: list[str]
    """The member's models (`settings.models`)."""
    arms: list[str]
    """The member's arms that voted, in voting order."""
    report: RunReport = field(repr=False)

    def as_json(self) -> dict[str, Any]:
        """The member's entry in `metadata.ensemble.members`."""
        return {"run": self.run, "run_id": self.run_id, "models": self.models, "arms": self.arms}


def describe(strategy: str, members: Sequence[Member]) -> str:
    """The ensemble's `model_id`: `ensemble:majority(run/arm, ...)`, voters in order."""
    voters = [f"{Path(m.run).name}/{arm}" for m in members for arm in m.arms]
    return f"{BACKEND}:{strategy}({', '.join(voters)})"


def ensemble_report(
    records: Sequence[ItemRecord],
    members: Sequence[Member],
    strategy: str,
    name: str,
    started: float,
    started_iso: str,
    notes: Mapping[str, str],
) -> RunReport:
    """report.json of the ensemble whose records are `records` (one arm, `name`)."""
    first = members[0].report
    tasks: dict[str, TaskResult] = {}
    summaries = {}
    for task in dict.fromkeys(r.task for r in records):
        source = next(m.report.tasks[task] for m in members if task in m.report.tasks)
        declared = source.declaration
        group = [r for r in records if r.task == task]
        numeric = declared.scorer == "numeric" if declared is not None else None
        summaries[(task, name)] = summarize(group, source.rows, numeric=numeric)
        tasks[task] = TaskResult(
            origin=source.origin,
            split=source.split,
            rows=source.rows,
            models={},
            data=source.data,
            declaration=declared,
        )
    declared_gates = {
        task: list(info.declaration.gates) if info.declaration is not None else []
        for task, info in tasks.items()
    }
    results = check_run(summaries, declared_gates, [])
    model_id = describe(strategy, members)
    for (task, arm), metrics in summaries.items():
        tasks[task].models[arm] = ModelResult(
            metrics=metrics,
            gates=[g.as_record() for g in results if g.task == task and g.model == arm],
        )
        data = tasks[task].data
        tasks[task].arms[arm] = ArmProvenance(
            model=name, backend=BACKEND, model_id=model_id, identity_sha256=None,
            variant=None, prompt_sha256=None, patch_sha256=None,
            data_sha256=data.sha256 if data is not None else None,
        )  # fmt: skip
    errors = sum(r.outcome == "error" for r in records)
    failed_gates = sum(g.passed is False for g in results)
    limits = {m.report.settings.limit for m in members}
    return RunReport(
        schema_version=SCHEMA_VERSION,
        run_id=runinfo.new_run_id(),
        started=started_iso,
        finished=runinfo.now_iso(),
        duration_s=round(time.time() - started, 3),
        argv=runinfo.argv(),
        # The pytest run's rule: 1 when a gate fails or an item errored.
        exit_status=1 if errors or failed_gates else 0,
        versions=runinfo.versions(),
        git=runinfo.git_commit(Path.cwd()),
        machine=runinfo.machine(),
        settings=SettingsInfo(
            models=[ModelInfo(name, BACKEND, model_id, vram_gb=None, revision=None)],
            limit=limits.pop() if len(limits) == 1 else None,
            seed=first.settings.seed,
            data_dir=first.settings.data_dir,
            batch_size="n/a",  # nothing was generated, so nothing was batched
            gates=[],
            strict=False,
        ),
        model_loads=[],
        workers={},
        tasks=tasks,
        gates=[g.as_record() for g in results],
        totals=Totals(
            items=len(records),
            passed=sum(r.outcome == "pass" for r in records),
            failed=sum(r.outcome == "fail" for r in records),
            errors=errors,
            gates_failed=failed_gates,
        ),
        files={"items": "items.jsonl"},
        metadata={
            "ensemble": {
                "name": name,
                "strategy": strategy,
                "members": [m.as_json() for m in members],
                "notes": dict(notes),
            }
        },
    )
