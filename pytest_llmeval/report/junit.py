"""The item facts that JUnit XML shows, as `llmeval.<field>` test-case properties."""

from __future__ import annotations

from pytest_llmeval.analyze.record import ItemRecord

# Record fields shown as JUnit properties (prefixed "llmeval.").
JUNIT_FIELDS = (
    "score", "extracted", "target", "method", "outcome", "latency_s", "tokens_in",
    "tokens_out", "energy_j", "cached",
)  # fmt: skip
JUNIT_COMPARISON_FIELDS = ("reference_model", "binary_match", "reference_error")

Property = tuple[str, str | int | float | bool]


def junit_properties(record: ItemRecord) -> list[Property]:
    """The record's non-null JUnit fields as (name, value) pairs for `user_properties`."""
    values: list[tuple[str, object]] = [(name, getattr(record, name)) for name in JUNIT_FIELDS]
    if record.comparison is not None:
        values += [(name, getattr(record.comparison, name)) for name in JUNIT_COMPARISON_FIELDS]
    return [
        (f"llmeval.{name}", value)
        for name, value in values
        if isinstance(value, str | int | float | bool)
    ]
