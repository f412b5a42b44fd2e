"""Report files (controller only): items.jsonl as items finish, report.json at the end, and
the parquet tables.

`items.jsonl` holds one `ItemRecord` per line, appended and flushed per item so that a crash
keeps every finished item; `report.json` is the `RunReport`. Both follow the JSON schemas in
`pytest_llmeval/report/schemas/`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from pytest_llmeval.analyze.record import ItemRecord, to_json
from pytest_llmeval.report.envelope import RunReport


class ReportWriter:
    """Writes the run's files under one directory; created when the first record arrives."""

    def __init__(self, report_path: Path) -> None:
        self.report_path = report_path
        report_path.parent.mkdir(parents=True, exist_ok=True)
        self.items_path = report_path.parent / "items.jsonl"
        # A fresh file per run: a reused --llmeval-report path must not mix two runs' items.
        self._items: IO[str] = self.items_path.open("w", encoding="utf-8")

    def append_item(self, record: ItemRecord) -> None:
        """Append one record to items.jsonl and flush it to the OS."""
        self._items.write(json.dumps(to_json(record), ensure_ascii=False) + "\n")
        self._items.flush()

    def write_report(self, report: RunReport) -> None:
        """Close items.jsonl and write report.json atomically (a reader never sees half)."""
        self._items.close()
        scratch = self.report_path.with_suffix(".json.tmp")
        scratch.write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False))
        scratch.replace(self.report_path)


AGREEMENT_COLUMNS = [
    "id", "task", "model", "reference_model", "text", "ground_truth",
    "primary_label", "primary_binary_label", "primary_response", "primary_reasoning",
    "primary_parsed", "primary_score",
    "reference_label", "reference_binary_label", "reference_response", "reference_reasoning",
    "reference_parsed", "reference_score", "binary_match", "finegrain_match",
    "response_indel_similarity", "reasoning_indel_similarity", "outcome",
]  # fmt: skip


def write_agreement_table(records: Sequence[ItemRecord], path: Path) -> bool:
    """Write the per-item agreement table (parquet) when the run compared backends, so that
    `df[~df.binary_match]` shows the disagreements. Returns whether a table was written.

    One row per compared item (both backends answered); items that errored on either side
    are in items.jsonl with their error."""
    compared = [
        r for r in records if r.comparison is not None and r.comparison.reference_error is None
    ]
    if not compared:
        return False
    import pandas as pd  # controller only, at the end of a comparison run

    rows = []
    for record in compared:
        fields = to_json(record)
        fields.update(fields.pop("comparison"))
        fields.update(ground_truth=record.target, primary_score=record.score)
        rows.append({column: fields.get(column) for column in AGREEMENT_COLUMNS})
    pd.DataFrame(rows, columns=AGREEMENT_COLUMNS).to_parquet(path, index=False)
    return True


def write_items_parquet(records: Sequence[ItemRecord], path: Path) -> None:
    """All item records as a parquet table for pandas (one row per item and model); the
    comparison fields of agreement runs become `comparison.<field>` columns."""
    import pandas as pd  # controller only, at the end of the run

    frame = pd.DataFrame([_flat(record) for record in records])
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


def _flat(record: ItemRecord) -> dict[str, Any]:
    row = to_json(record)
    comparison = row.pop("comparison")
    if comparison is not None:
        row.update({f"comparison.{key}": value for key, value in comparison.items()})
    # Sampled items: the vote as `votes.<field>` columns; the candidates are samples.parquet.
    votes = row.pop("votes", None)
    if votes is not None:
        row.update({f"votes.{key}": value for key, value in votes.items()})
    row.pop("samples", None)
    return row
