"""Report files (controller only): items.jsonl as items finish, report.json at the end, and
the terminal summary table.

`items.jsonl` is appended and flushed per item so that a crash keeps every finished item;
`report.json` is the envelope: run id, times, argv, versions, git, machine, models, and per
task x model the metrics with intervals and the gates.
"""

from __future__ import annotations

import json
import secrets
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

    def __init__(self, report_path: Path) -> None:
        self.report_path = report_path
        report_path.parent.mkdir(parents=True, exist_ok=True)
        self.items_path = report_path.parent / "items.jsonl"
        # A fresh file per run: a reused --llmeval-report path must not mix two runs' items.
        self._items: IO[str] = self.items_path.open("w", encoding="utf-8")

    def append_item(self, record: Mapping[str, Any]) -> None:
        line = {k: v for k, v in record.items() if k not in TASK_CONTEXT_FIELDS}
        self._items.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._items.flush()

    def write_report(self, envelope: Mapping[str, Any]) -> None:
        self._items.close()
        scratch = self.report_path.with_suffix(".json.tmp")
        scratch.write_text(json.dumps(envelope, indent=2, ensure_ascii=False, default=str))
        scratch.replace(self.report_path)


AGREEMENT_COLUMNS = [
    "id", "task", "model", "reference_model", "text", "ground_truth",
    "primary_label", "primary_response", "primary_reasoning", "primary_parsed", "primary_score",
    "reference_label", "reference_response", "reference_reasoning", "reference_parsed",
    "reference_score", "binary_match", "finegrain_match", "response_similarity",
    "reasoning_similarity", "outcome",
]  # fmt: skip


def write_agreement_table(records: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Write the per-item agreement table (parquet) when the run compared backends, so that
    `df[~df.binary_match]` shows the disagreements. Returns whether a table was written."""
    compared = [r for r in records if r.get("reference_model")]
    if not compared:
        return False
    import pandas as pd  # controller only, at the end of a comparison run

    rows = [
        {
            **{column: record.get(column) for column in AGREEMENT_COLUMNS},
            "ground_truth": record.get("target"),
            "primary_score": record.get("score"),
        }
        for record in compared
    ]
    pd.DataFrame(rows, columns=AGREEMENT_COLUMNS).to_parquet(path, index=False)
    return True


def write_items_parquet(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    """All item records as a parquet table for pandas (one row per item and model)."""
    import pandas as pd  # controller only, at the end of the run

    frame = pd.DataFrame([dict(record) for record in records])
    for column in frame.columns:
        if frame[column].dtype == object:
            kinds = {type(v) for v in frame[column] if v is not None}
            if len(kinds) > 1 or kinds - {str, bool}:
                # Mixed or nested values (labels that are ints in one task and strings in
                # another, lists): stored as text so that one column has one type.
                frame[column] = [
                    None if v is None else v if isinstance(v, str) else json.dumps(v, default=str)
                    for v in frame[column]
                ]
    frame.to_parquet(path, index=False)


def summary_markdown(
    envelope: Mapping[str, Any],
    summaries: Mapping[tuple[str, str], Mapping[str, Any]],
    gate_results: Sequence[GateResult],
) -> str:
    """summary.md: the run, then per task x model tables of quality, speed and cost."""
    machine = envelope.get("machine", {})
    gpus = machine.get("gpus", {})
    lines = [
        f"# llmeval run {envelope.get('run_id')}",
        "",
        f"- started {envelope.get('started')}, finished {envelope.get('finished')}",
        f"- command: `{' '.join(envelope.get('argv', []))}`",
        f"- machine: {machine.get('cpu')} x{machine.get('cpu_count')}, GPUs: "
        + (", ".join(gpus.get("names", [])) or f"none ({gpus.get('reason')})"),
        f"- exit status {envelope.get('exit_status')}",
        "",
        "## Quality",
        "",
    ]
    quality = [
        [task, model, f"{m['n']}/{m['task_rows']}" + (" partial" if m["partial"] else ""),
         _fmt(m.get("accuracy"), "{:.3f}"), _ci(m.get("accuracy_ci95")),
         _fmt(m.get("parse_rate"), "{:.3f}"), m["n_errors"],
         "; ".join(f"{g.gate.text} {'ok' if g.passed else 'FAIL'}"
                   for g in gate_results if g.task == task and g.model == model) or "-"]
        for (task, model), m in summaries.items()
    ]  # fmt: skip
    lines.append(
        tabulate(
            quality,
            headers=["task", "model", "n", "accuracy", "95% CI", "parse rate", "errors", "gates"],
            tablefmt="github",
            disable_numparse=True,  # keep "0.800" as written: fixed decimals line up
        )
    )
    cost = [
        [task, model, _fmt(m.get("latency_p50"), "{:.2f}"), _fmt(m.get("latency_p95"), "{:.2f}"),
         _fmt(m.get("tokens_per_s"), "{:.1f}"), _fmt(m.get("items_per_min"), "{:.1f}"),
         m["tokens_in"], m["tokens_out"], _energy(m), _fmt(m.get("j_per_token"), "{:.3f}"),
         _fmt(m.get("avg_power_w"), "{:.0f}"), _fmt(m.get("peak_power_w"), "{:.0f}"),
         _fmt(m.get("peak_vram_gb"), "{:.2f}"), _fmt(m.get("load_time_s"), "{:.1f}"),
         _fmt(m.get("cost_usd"), "{:.4f}")]
        for (task, model), m in summaries.items()
    ]  # fmt: skip
    headers = ["task", "model", "p50 s", "p95 s", "tok/s", "items/min", "tokens in",
               "tokens out", "energy Wh", "J/token", "avg W", "peak W", "peak VRAM GB",
               "load s", "cost USD"]  # fmt: skip
    lines += [
        "",
        "## Latency, throughput, energy, cost",
        "",
        tabulate(cost, headers, "github", disable_numparse=True),
    ]
    reasons = sorted(
        {str(m["energy_reason"]) for m in summaries.values() if m.get("energy_reason")}
    )
    if reasons:
        lines += ["", "Energy not measured: " + "; ".join(reasons)]
    compared = [(key, m) for key, m in summaries.items() if m.get("agreement") is not None]
    if compared:
        lines += ["", "## Backend agreement", "", agreement_table(compared, "github")]
    return "\n".join(lines) + "\n"


def _energy(metrics: Mapping[str, Any]) -> str:
    return _fmt(metrics.get("energy_wh"), "{:.4f}")


def _ci(interval: Sequence[float] | None) -> str:
    return "-" if not interval else f"{interval[0]:.3f}-{interval[1]:.3f}"


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
    table = tabulate(rows, headers=headers, tablefmt="simple")
    compared = [(key, m) for key, m in summaries.items() if m.get("agreement") is not None]
    if compared:
        table += "\n\n" + agreement_table(compared)
    return table


def agreement_table(
    compared: Sequence[tuple[tuple[str, str], Mapping[str, Any]]], tablefmt: str = "simple"
) -> str:
    """Backend agreement per task: rates, similarity, each side's accuracy, the assessment."""
    rows = []
    for (task, model), m in compared:
        ci = m.get("agreement_ci95") or [0.0, 0.0]
        rows.append(
            [
                task,
                f"{model} vs {m['reference_model']}",
                f"{m['agreement']:.3f} ({ci[0]:.3f}-{ci[1]:.3f})",
                _fmt(m.get("finegrain_agreement"), "{:.3f}"),
                _fmt(m.get("both_parse_rate"), "{:.3f}"),
                _fmt(m.get("response_similarity"), "{:.3f}"),
                _fmt(m.get("reasoning_similarity"), "{:.3f}"),
                " / ".join(_fmt(m.get(k), "{:.3f}") for k in ("accuracy", "reference_accuracy")),
                m["assessment"]["overall"],
            ]
        )
    headers = ["task", "backends", "agreement (95% CI)", "fine-grained", "both parsed",
               "resp. sim.", "reas. sim.", "accuracy", "assessment"]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
