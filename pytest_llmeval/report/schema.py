"""JSON Schemas of items.jsonl lines and report.json, generated from their dataclasses.

The schemas ship in `pytest_llmeval/report/schemas/` (a test keeps them equal to what the
classes generate); regenerate them after changing a record or report field with::

    python -m pytest_llmeval.report.schema

(it also rewrites the field reference, docs/fields.md).

`load_report` and `load_items` read a saved run back into the typed classes, with a one-line
error naming the file when it is not a report of this schema version. pydantic is imported
only here: generating and validating are its jobs, the hot path never needs it.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_llmeval.analyze.record import SCHEMA_VERSION, ItemRecord
from pytest_llmeval.report.envelope import RunReport

SCHEMAS: dict[str, type[Any]] = {"item-record": ItemRecord, "run-report": RunReport}
_FOLDER = "schemas"


class ReportError(ValueError):
    """A file is not a readable run report or item record of this schema version."""


@cache
def _adapter(kind: str) -> Any:
    from pydantic import TypeAdapter  # only where schemas are made or reports validated

    return TypeAdapter(SCHEMAS[kind])


def generate_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `kind` ("item-record" or "run-report")."""
    schema: dict[str, Any] = _adapter(kind).json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://pytest-llmeval/schemas/{kind}.v{SCHEMA_VERSION}.json",
        "version": SCHEMA_VERSION,
        **schema,
    }


def schema_file(kind: str) -> str:
    """The file name of a shipped schema."""
    return f"{kind}.v{SCHEMA_VERSION}.schema.json"


def shipped_schema(kind: str) -> dict[str, Any]:
    """The schema of `kind` as shipped in the package."""
    text = resources.files(__package__).joinpath(_FOLDER, schema_file(kind)).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load_report(path: Path) -> RunReport:
    """A saved report.json as a RunReport (raises ReportError naming the file and the problem)."""
    data = _read_json(path)
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"{path}: schema version {version!r}, this pytest-llmeval reads version "
            f"{SCHEMA_VERSION}; rerun the evals with this version to compare"
        )
    report: RunReport = _validated("run-report", data, path)
    return report


def load_items(path: Path) -> list[ItemRecord]:
    """The records of a saved items.jsonl (raises ReportError naming the file and line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}:{number}: not JSON ({exc.msg})") from None
        records.append(_validated("item-record", data, Path(f"{path}:{number}")))
    return records


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None


def _validated(kind: str, data: Any, where: Path) -> Any:
    from pydantic import ValidationError

    try:
        return _adapter(kind).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ReportError(
            f"{where}: not a valid {kind} (schema version {SCHEMA_VERSION}): {location}: "
            f"{first['msg']} ({exc.error_count()} problem(s))"
        ) from None


def write_schemas(folder: Path) -> list[Path]:
    """Write every schema into `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in SCHEMAS:
        target = folder / schema_file(kind)
        target.write_text(json.dumps(generate_schema(kind), indent=2) + "\n", encoding="utf-8")
        written.append(target)
    return written


def field_docs() -> str:
    """The field reference page (docs/fields.md) as the current classes generate it."""
    from pytest_llmeval.report.fielddocs import render_field_docs

    return render_field_docs({kind: generate_schema(kind) for kind in SCHEMAS})


#: Where the field reference lives in a source checkout.
FIELD_DOCS = Path(__file__).resolve().parents[2] / "docs" / "fields.md"

if __name__ == "__main__":
    for path in write_schemas(Path(__file__).parent / _FOLDER):
        print(path, file=sys.stderr)
    FIELD_DOCS.parent.mkdir(exist_ok=True)
    FIELD_DOCS.write_text(field_docs(), encoding="utf-8")
    print(FIELD_DOCS, file=sys.stderr)
