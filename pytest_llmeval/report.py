"""Report files (controller only): items.jsonl as items finish, report.json at the end, and
the terminal summary table.

`items.jsonl` is appended and flushed per item so that a crash keeps every finished item;
`report.json` is the envelope: run id, times, argv, versions, git, machine, models, and per
task x model the metrics with intervals and the gates.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tabulate import tabulate

from pytest_llmeval.gates import GateResult

SCHEMA_VERSION = 1
# Repeated per record so that workers can tell the controller about the task; kept out of
# items.jsonl because report.json holds them once per task.
TASK_CONTEXT_FIELDS = ("task_rows", "task_origin", "task_gates", "split")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ReportWriter:
    """Writes the run's files under one directory; created when the first record arrives."""

    def __init__(self, report_path: Path, run_id: str) -> None:
        self.report_path = report_path
        self.run_id = run_id
        report_path.parent.mkdir(parents=True, exist_ok=True)
        self.items_path = report_path.parent / "items.jsonl"
        self._items: IO[str] = self.items_path.open("a", encoding="utf-8")
        self.started = time.time()

    def append_item(self, record: Mapping[str, Any]) -> None:
        line = {k: v for k, v in record.items() if k not in TASK_CONTEXT_FIELDS}
        self._items.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._items.flush()

    def write_report(self, envelope: Mapping[str, Any]) -> None:
        self._items.close()
        scratch = self.report_path.with_suffix(".json.tmp")
        scratch.write_text(json.dumps(envelope, indent=2, ensure_ascii=False, default=str))
        scratch.replace(self.report_path)


def summary_table(
    summaries: Mapping[tuple[str, str], Mapping[str, Any]], gate_results: Sequence[GateResult]
) -> str:
    """The tabulate table printed at the end of the session, one row per task x model."""
    rows = []
    for (task, model), metrics in summaries.items():
        gates = [g for g in gate_results if g.task == task and g.model == model]
        accuracy = metrics.get("accuracy")
        ci = metrics.get("accuracy_ci95")
        rows.append(
            [
                task,
                model,
                f"{metrics['n']}/{metrics['task_rows']}"
                + (" (partial)" if metrics["partial"] else ""),
                "-" if accuracy is None else f"{accuracy:.3f}",
                "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}",
                metrics["n_errors"],
                _fmt(metrics.get("latency_p50"), "{:.2f}s"),
                _fmt(metrics.get("latency_p95"), "{:.2f}s"),
                _fmt(metrics.get("tokens_per_s"), "{:.1f}"),
                ", ".join(f"{g.gate.text} {'ok' if g.passed else 'FAIL'}" for g in gates) or "-",
            ]
        )
    headers = ["task", "model", "n", "accuracy", "95% CI", "errors", "p50", "p95", "tok/s", "gates"]
    return tabulate(rows, headers=headers, tablefmt="simple")


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
