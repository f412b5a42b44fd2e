"""Controller-side run state: collects item records, checks gates, writes the report.

Lives only in the process that owns the session's reports (the only process without xdist,
the xdist controller with it). Records arrive through test reports; the writer is created on
the first record, so a session without eval items writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.analyze.aggregate import group_records, summarize
from pytest_llmeval.analyze.cost import Price, estimate_cost
from pytest_llmeval.analyze.gates import Gate, GateResult, check_gate, effective_gates, parse_gate
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.settings import Settings
from pytest_llmeval.report import runinfo
from pytest_llmeval.report.writers import SCHEMA_VERSION, ReportWriter, new_run_id, now_iso


@dataclass
class Run:
    settings: Settings
    rootdir: Path
    run_id: str = field(default_factory=new_run_id)
    started_iso: str = field(default_factory=now_iso)
    started: float = field(default_factory=time.time)
    records: list[dict[str, Any]] = field(default_factory=list)
    gate_results: list[GateResult] = field(default_factory=list)
    loads: list[dict[str, Any]] = field(default_factory=list)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    misses: int = 0
    prices: dict[str, Price] = field(default_factory=dict)
    writer: ReportWriter | None = None

    @property
    def report_path(self) -> Path:
        return self.settings.report_path or self.rootdir / "reports" / self.run_id / "report.json"

    def add_record(self, record: Mapping[str, Any], missed: bool) -> None:
        """Keep one finished item's record and append it to items.jsonl at once."""
        if self.writer is None:
            self.writer = ReportWriter(self.report_path)
        self.records.append(dict(record))
        self.writer.append_item(record)
        self.misses += int(missed)

    def summaries(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Per task x model: metrics from the records plus the model's hardware and cost."""
        summaries = {}
        for (task, model), group in group_records(self.records).items():
            metrics = summarize(group)
            metrics.update(self._hardware(model))
            spec = next((s for s in self._specs() if s.name == model), None)
            if spec is not None:
                metrics.update(
                    estimate_cost(
                        spec.backend,
                        spec.model_id,
                        metrics["tokens_in"],
                        metrics["tokens_out"],
                        self.prices,
                    )
                )
            summaries[(task, model)] = metrics
        return summaries

    def _specs(self) -> list[ModelSpec]:
        reference = [self.settings.reference] if self.settings.reference else []
        return [*self.settings.models, *reference]

    def _hardware(self, model: str) -> dict[str, Any]:
        """Load time, size on disk and peak VRAM of `model` across the workers that ran it."""
        loads = [entry for entry in self.loads if entry.get("model") == model]

        def largest(key: str) -> float | None:
            values = [float(e[key]) for e in loads if e.get(key) is not None]
            return max(values) if values else None

        size, vram = largest("model_size_bytes"), largest("peak_vram_bytes")
        return {
            "load_time_s": largest("load_time_s"),
            "model_loads": sum(int(e.get("model_loads") or 0) for e in loads),
            "model_size_gb": None if size is None else round(size / 1e9, 3),
            "peak_vram_gb": None if vram is None else round(vram / 1e9, 3),
        }

    def check_gates(self) -> list[GateResult]:
        """Check every task x model against its effective gates (task < ini < cli)."""
        results = []
        for (task, model), metrics in self.summaries().items():
            declared = _declared_gates(task, self.records)
            for gate in effective_gates(task, declared, self.settings.gates):
                results.append(check_gate(gate, task, model, metrics))
        ran = {task for task, _ in self.summaries()}
        for gate in self.settings.gates:
            if gate.task != "*" and gate.task not in ran:
                # A gate the user asked for on a task that produced nothing (data missing,
                # misspelt name, deselected) must not pass silently.
                results.append(check_gate(gate, gate.task, "-", {}))
        self.gate_results = results
        return results

    def envelope(self, exitstatus: int) -> dict[str, Any]:
        summaries = self.summaries()
        tasks: dict[str, dict[str, Any]] = {}
        for (task, model), metrics in summaries.items():
            of_task = [r for r in self.records if r["task"] == task]
            # A crashed item's record knows little about its task: prefer one that ran.
            first = next((r for r in of_task if r.get("task_origin")), of_task[0])
            tasks.setdefault(
                task,
                {
                    "origin": first.get("task_origin"),
                    "split": first.get("split"),
                    "rows": first.get("task_rows"),
                    "models": {},
                },
            )
            tasks[task]["models"][model] = {
                "metrics": metrics,
                "gates": [
                    g.as_dict() for g in self.gate_results if g.task == task and g.model == model
                ],
            }
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "started": self.started_iso,
            "finished": now_iso(),
            "duration_s": round(time.time() - self.started, 3),
            "argv": runinfo.argv(),
            "exit_status": int(exitstatus),
            "versions": runinfo.versions(),
            "git": runinfo.git_commit(self.rootdir),
            "machine": runinfo.machine(),
            "settings": {
                "models": [spec.as_dict() for spec in self.settings.models],
                "limit": self.settings.limit,
                "seed": self.settings.seed,
                "data_dir": str(self.settings.data_dir) if self.settings.data_dir else None,
                "batch_size": self.settings.batch_size or "auto",
                "gates": [
                    g.text if g.task == "*" else f"{g.task}:{g.text}" for g in self.settings.gates
                ],
                "strict": self.settings.strict,
            },
            "model_loads": self.loads,
            "workers": self.workers,
            "tasks": tasks,
            "gates": [g.as_dict() for g in self.gate_results],
            "totals": {
                "items": len(self.records),
                "passed": sum(r["outcome"] == "pass" for r in self.records),
                "failed": sum(r["outcome"] == "fail" for r in self.records),
                "errors": sum(r["outcome"] == "error" for r in self.records),
                "gates_failed": sum(not g.passed for g in self.gate_results),
            },
            "files": {"items": "items.jsonl"},
        }


def _declared_gates(task: str, records: Sequence[Mapping[str, Any]]) -> list[Gate]:
    # Records of crashed items may not know the task's gates (None): take one that does.
    declared: list[str] = next(
        (r["task_gates"] for r in records if r["task"] == task and r.get("task_gates") is not None),
        [],
    )
    return [parse_gate(text, "task", task) for text in declared]
