"""The field reference of items.jsonl and report.json (docs/fields.md), rendered from the schemas.

Each record and report class becomes a table of its fields: name, JSON type, description (the
field's docstring: unit and how it is computed). Rendering from the generated schemas keeps the
page and the definitions in one place: `python -m pytest_llmeval.report.schema` rewrites both,
and a test fails when the page drifts or a field has no description.
"""

from __future__ import annotations

from typing import Any

from pytest_llmeval.analyze.record import SCHEMA_VERSION

_INTRO = f"""\
# Record and report fields (schema version {SCHEMA_VERSION})

Generated from the JSON Schemas shipped in `pytest_llmeval/report/schemas/`
(`item-record.v{SCHEMA_VERSION}.schema.json`, `run-report.v{SCHEMA_VERSION}.schema.json`) by
`python -m pytest_llmeval.report.schema`; do not edit by hand. Every field is always present;
`null` means "does not apply" or "not measured" (a `*_reason` field then says why).
Times are seconds, energy joules (`_j`) or watt-hours (`_wh`), power watts, memory GB.
"""


def render_field_docs(schemas: dict[str, dict[str, Any]]) -> str:
    """Markdown: one table per class, the top-level classes first, then their parts."""
    parts = [_INTRO]
    seen: set[str] = set()
    for kind, schema in schemas.items():
        definitions = schema.get("$defs", {})
        title = schema.get("title", kind)
        parts.append(_table(f"{title} (`{kind}`)", schema))
        seen.add(title)
        for name in sorted(definitions):
            if name not in seen:
                seen.add(name)
                parts.append(_table(name, definitions[name]))
    return "\n".join(parts)


def undocumented_fields(schemas: dict[str, dict[str, Any]]) -> list[str]:
    """`Class.field` of every property without a description."""
    missing = []
    for schema in schemas.values():
        classes = {schema.get("title", ""): schema, **schema.get("$defs", {})}
        for name, definition in classes.items():
            for field, spec in definition.get("properties", {}).items():
                if not spec.get("description", "").strip():
                    missing.append(f"{name}.{field}")
    return sorted(set(missing))


def _table(heading: str, definition: dict[str, Any]) -> str:
    lines = [f"## {heading}", ""]
    if definition.get("description"):
        lines += [" ".join(definition["description"].split()), ""]
    if "enum" in definition:
        return "\n".join([*lines, "One of: " + ", ".join(f"`{v}`" for v in definition["enum"]), ""])
    lines += ["| field | type | meaning |", "|---|---|---|"]
    for field, spec in definition.get("properties", {}).items():
        description = " ".join(spec.get("description", "").split()).replace("|", "\\|")
        lines.append(f"| `{field}` | {_type_of(spec)} | {description} |")
    return "\n".join([*lines, ""])


def _type_of(spec: dict[str, Any]) -> str:
    """A short JSON type: `number \\| null`, `[Metrics]`, `{str: TaskResult}`."""
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in spec:
        return " \\| ".join(_type_of(option) for option in spec["anyOf"])
    if "enum" in spec:
        return " \\| ".join(f"`{value}`" for value in spec["enum"])
    if "const" in spec:
        return f"`{spec['const']}`"
    kind = spec.get("type", "any")
    if kind == "array":
        return f"[{_type_of(spec.get('items', {}))}]"
    if kind == "object" and "additionalProperties" in spec:
        values = spec["additionalProperties"]
        return f"{{str: {_type_of(values) if isinstance(values, dict) else 'any'}}}"
    return str(kind)
