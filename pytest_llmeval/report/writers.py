"""Report files (controller only): items.jsonl as items finish, report.json at the end, and
the parquet tables.

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
