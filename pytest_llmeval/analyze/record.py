"""The item record: what one evaluated item leaves behind, defined once.

One `ItemRecord` per item and model is built on the worker (`pytest_llmeval.run.records`),
crosses the xdist channel once as plain JSON (`to_json` / `from_json`, never a pickle), is
appended to items.jsonl by the controller and read back by aggregation and the reports. The
JSON Schema shipped in `pytest_llmeval/report/schemas/` is generated from these classes
(`pytest_llmeval.report.schema`).

Why stdlib dataclasses and not pydantic models: the record is built for every item on the
hot path and the plugin is imported in every pytest session of an environment, so the types
cost nothing to import or construct; pydantic reads the same classes (attribute docstrings
become field descriptions) to generate the schema and to validate saved reports, and is
imported only there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SCHEMA_VERSION = 2
"""Version of the record and report schemas. 2: typed record; agreement fields under
`comparison`; task context out of the record; `model_loads` entries typed."""

# Read by pydantic when it generates a schema or validates a saved report: field docstrings
# become descriptions, unknown keys are errors, and every key is required in the output.
SCHEMA_CONFIG: dict[str, Any] = {
    "use_attribute_docstrings": True,
    "extra": "forbid",
    "json_schema_serialization_defaults_required": True,
}

Outcome = Literal["pass", "fail", "error"]
Label = str | int | float | bool | None


@dataclass
class Comparison:
    """Agreement runs only: the same item on the reference backend, compared with the primary."""

    __pydantic_config__ = SCHEMA_CONFIG

    reference_model: str
    """Name of the reference model (`--compare-backend` or the task's `reference`)."""
    reference_raw_response: str
    """The reference backend's full response, reasoning included."""
    reference_extracted: str | None
    """What the task's scorer extracted from the reference response."""
    reference_score: float
    """The reference response's score against the ground truth."""
    reference_latency_s: float | None
    reference_tokens_in: int | None
    reference_tokens_out: int | None
    reference_cached: bool | None
    text: str
    """The item's own input: the content of the last user message."""
    primary_label: str
    """Label parsed from the primary response (`[invalid]` when none)."""
    reference_label: str
    primary_parsed: bool
    reference_parsed: bool
    both_parsed: bool
    finegrain_match: bool
    """Whether the two labels are the same (case-insensitive), `[invalid]` included."""
    binary_match: bool
    """Whether the labels' binary classes (the task's `binary_of`) are the same."""
    response_similarity: float
    """0..1 similarity of the two final answers (reasoning removed)."""
    reasoning_similarity: float
    primary_response: str
    """The primary's final answer, reasoning removed."""
    reference_response: str
    primary_reasoning: str
    reference_reasoning: str
    primary_response_chars: int
    reference_response_chars: int
    primary_reasoning_chars: int
    reference_reasoning_chars: int


@dataclass
class ItemRecord:
    """One dataset row evaluated on one model (or one hand-written test's generation)."""

    __pydantic_config__ = SCHEMA_CONFIG

    id: str
    """Stable item id, `<task>/<split>/<row>` (hand-written tests: the test's name)."""
    nodeid: str
    """The pytest node id, for `--lf`, `-k` and JUnit."""
    task: str
    model: str
    """The model's name as given on the command line (alias, Hub id or `backend:spec`)."""
    split: str
    row_index: int
    source: Literal["task", "test"]
    """`task`: an item collected from a Task; `test`: a generation made by a hand-written test
    through the `llmeval_backend` fixture (its outcome is the test's)."""
    outcome: Outcome
    """`pass`, `fail` (a wrong answer) or `error` (the item could not be evaluated)."""
    error: str | None = None
    """One-line message of an error outcome."""
    label: Label = None
    """The row's value of the task's `label_field` (stratification), if declared."""
    worker: str | None = None
    """xdist worker id (`gw0`) or `main`."""
    target: str | None = None
    prompt: str | None = None
    """The prompt exactly as the model saw it (chat template applied)."""
    response: str | None = None
    reasoning: str | None = None
    """Reasoning separated from the answer (`<think>` blocks, harmony analysis channel)."""
    extracted: str | None = None
    method: str | None = None
    """How the answer was extracted (`strict`, `flexible`, `label`, `exact`, `none`)."""
    span: str | None = None
    """Excerpt of the response ending at the extracted answer."""
    score: float | None = None
    """0..1; None when the item errored."""
    correct: bool | None = None
    """Whether `score` reached the task's `pass_threshold`; None when the item has no score.
    `accuracy` counts this, not `outcome` (in agreement runs the outcome is whether the
    labels agree)."""
    latency_s: float | None = None
    """Seconds: this item's own latency (see `latency_method`), not its batch's wall time;
    None for a cached item (no model work this run)."""
    latency_method: str | None = None
    tokens_in: int | None = None
    """Prompt tokens; None when the backend does not count tokens."""
    tokens_out: int | None = None
    """Tokens the model generated, the end-of-sequence/stop token not counted; None when the
    backend does not count tokens (a callable that reports no counts)."""
    finish_reason: str | None = None
    batch_id: str | None = None
    """The generation batch of this run (unique per run); None for a cached item."""
    batch_size: int | None = None
    batch_wall_s: float | None = None
    """Seconds: wall time of the item's batch; None for a cached item."""
    cached: bool | None = None
    """True when the generation came from the cache: no model work this run, so the latency,
    batch and energy fields are None (the cache keeps the first run's figures)."""
    energy_j: float | None = None
    """GPU energy attributed to this item (its generated-token share of the batch)."""
    cpu_energy_j: float | None = None
    energy_reason: str | None = None
    """Why energy is null, when it is."""
    energy_method: str | None = None
    batch_energy_j: float | None = None
    batch_avg_w: float | None = None
    batch_peak_w: float | None = None
    comparison: Comparison | None = None
    """Agreement runs only: the reference backend's result and the comparison."""


@dataclass(frozen=True)
class TaskInfo:
    """What the controller needs to know about a task, sent along with each of its records."""

    __pydantic_config__ = SCHEMA_CONFIG

    name: str
    origin: str | None
    """Where the rows came from (`file:...`, `hub:...`, `generated`)."""
    split: str | None
    rows: int | None
    """Rows in the task before `--limit` or deselection."""
    gates: list[str] | None = None
    """Gates the task declares; None when unknown (an item whose worker crashed first)."""


def to_json(record: ItemRecord) -> dict[str, Any]:
    """The record as plain JSON types (a dict of str, numbers, bools, None, lists, dicts)."""
    # Every field is a scalar or the flat Comparison: a shallow copy is the whole conversion,
    # and it runs several times per item (dataclasses.asdict deep-copies each value).
    data = dict(vars(record))
    if record.comparison is not None:
        data["comparison"] = dict(vars(record.comparison))
    return data


def task_info_to_json(info: TaskInfo) -> dict[str, Any]:
    """A TaskInfo as plain JSON types."""
    data = dict(vars(info))
    data["gates"] = None if info.gates is None else list(info.gates)
    return data


def from_json(data: dict[str, Any]) -> ItemRecord:
    """A record from `to_json`'s output (raises TypeError on unknown or missing keys)."""
    comparison = data.get("comparison")
    return ItemRecord(
        **{**data, "comparison": Comparison(**comparison) if comparison is not None else None}
    )


def task_info_from_json(data: dict[str, Any]) -> TaskInfo:
    """A TaskInfo from `task_info_to_json` output."""
    return TaskInfo(**data)
