"""The JSON schemas of the record and the report, and reading saved runs back."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from conftest import assert_valid_run, run_evals
from pytest_llmeval.analyze.record import SCHEMA_VERSION, ItemRecord, from_json, to_json
from pytest_llmeval.report.fielddocs import undocumented_fields
from pytest_llmeval.report.schema import (
    FIELD_DOCS,
    SCHEMAS,
    ReportError,
    field_docs,
    generate_schema,
    load_items,
    load_report,
    shipped_schema,
)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_shipped_schemas_are_what_the_classes_generate(kind: str) -> None:
    # Fails when a record or report field changed without `python -m
    # pytest_llmeval.report.schema` (which rewrites the shipped files).
    assert shipped_schema(kind) == generate_schema(kind)
    assert shipped_schema(kind)["version"] == SCHEMA_VERSION


def test_the_record_schema_describes_fields_and_rejects_strangers() -> None:
    schema = shipped_schema("item-record")
    assert "its outcome is the test's" in schema["properties"]["source"]["description"]
    assert set(schema["required"]) == set(schema["properties"])
    validator = jsonschema.Draft202012Validator(schema)
    good = to_json(
        ItemRecord(
            id="t/test/0001", nodeid="x.py::t/test/0001", task="t", model="m", split="test",
            row_index=1, source="task", outcome="pass", score=1.0,
        )
    )  # fmt: skip
    validator.validate(good)
    assert from_json(good) == ItemRecord(**{**good, "comparison": None})
    with pytest.raises(jsonschema.ValidationError, match="'scor' was unexpected"):
        validator.validate({**good, "scor": 1.0})
    with pytest.raises(jsonschema.ValidationError, match="'maybe' is not one of"):
        validator.validate({**good, "outcome": "maybe"})


def test_a_saved_run_reads_back_typed(evalproject: pytest.Pytester) -> None:
    run_evals(evalproject).assert_outcomes(passed=11)
    folder = evalproject.path / "out"
    assert_valid_run(folder)
    report = load_report(folder / "report.json")
    metrics = report.tasks["mini"].models["callable:answers:reply"].metrics
    assert metrics.n == 10 and metrics.accuracy == 1.0 and report.gates[0].passed
    records = load_items(folder / "items.jsonl")
    assert [r.id for r in records] == [f"mini/test/{i:04d}" for i in range(10)]
    assert all(isinstance(r, ItemRecord) and r.outcome == "pass" for r in records)


def test_reading_a_bad_report_names_the_file_and_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "report.json"
    with pytest.raises(ReportError, match=r"nope/report.json: cannot read"):
        load_report(missing)
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    with pytest.raises(ReportError, match=r"garbled.json: not JSON"):
        load_report(garbled)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": 1, "run_id": "x"}))
    with pytest.raises(ReportError, match=r"old.json: schema version 1, this pytest-llmeval reads"):
        load_report(old)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "run_id": "x"}))
    with pytest.raises(
        ReportError,
        match=rf"partial.json: not a valid run-report \(schema version {SCHEMA_VERSION}\): started: ",
    ):
        load_report(partial)
    lines = tmp_path / "items.jsonl"
    lines.write_text('{"id": "a"}\n')
    with pytest.raises(ReportError, match=r"items.jsonl:1: not a valid item-record"):
        load_items(lines)


def test_the_field_reference_is_what_the_classes_generate() -> None:
    # docs/fields.md is rendered from the schemas; `python -m pytest_llmeval.report.schema`
    # rewrites it with them.
    assert FIELD_DOCS.read_text(encoding="utf-8") == field_docs()
    page = field_docs()
    assert "| `latency_s` | number \\| null | This item's own latency" in page
    assert "## Metrics" in page and "## Comparison" in page


def test_every_record_and_report_field_is_described() -> None:
    # docs/fields.md is the field reference: each field says what it is, its unit and how it
    # is computed (the field's docstring in its dataclass).
    schemas = {kind: generate_schema(kind) for kind in SCHEMAS}
    assert undocumented_fields(schemas) == []
