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

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 5
"""Version of the record and report schemas. 2: typed record; agreement fields under
`comparison`; task context out of the record; `model_loads` entries typed. 3: `correct`;
rates over all selected items (`n`) with `*_answered` twins; `mean_score`,
`accuracy_strict`; speed and energy over generated items; Indel similarity names; kappa;
the reference's own figures and errors; task declarations and data origins."""

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
    """Agreement runs only: the same item on the reference backend, compared with the primary.

    The reference side has its own generation facts and its own error: when the reference
    backend fails, `reference_error` says why, the reference and comparison fields are None,
    and the record keeps the primary's generation and score (the item's outcome is `error`).
    """

    __pydantic_config__ = SCHEMA_CONFIG

    reference_model: str
    """Name of the reference model (`--compare-backend` or the task's `reference`)."""
    reference_error: str | None
    """One-line message when the reference backend failed on this item (then the comparison
    fields are None); None when it answered."""
    reference_raw_response: str | None
    """The reference backend's full response, reasoning included."""
    reference_extracted: str | None
    """What the task's scorer extracted from the reference response."""
    reference_score: float | None
    """The reference response's score against the ground truth (0..1)."""
    reference_correct: bool | None
    """Whether the reference's score reached the task's `pass_threshold` (None when the
    reference failed); `reference_accuracy` is the share of these that are true."""
    reference_prompt: str | None
    """The prompt exactly as the reference model saw it (its own chat template applied)."""
    reference_finish_reason: str | None
    """Why the reference generation stopped (`stop`, `length`, ...), as its backend said."""
    reference_latency_s: float | None
    """The reference generation's own latency in seconds (see the record's `latency_method`);
    a cached reference generation keeps the figures of the run that made it."""
    reference_tokens_in: int | None
    """Prompt tokens of the reference generation; None when its backend does not count tokens or
    the reference failed."""
    reference_tokens_out: int | None
    """Tokens the reference generated, the end-of-sequence/stop token not counted; None when its
    backend does not count tokens or the reference failed."""
    reference_cached: bool | None
    """True when the reference generation came from the cache (no model work this run)."""
    reference_batch_id: str | None
    """The reference generation's batch (distinct from the primary's batches)."""
    reference_batch_size: int | None
    """Requests in the reference generation's batch; None when the reference failed (a cached
    generation keeps its first run's batch, as `reference_latency_s`)."""
    reference_batch_wall_s: float | None
    """Wall time in seconds of the reference generation's whole batch."""
    text: str
    """The item's own input: the content of the last user message."""
    primary_label: str
    """Label parsed from the primary response (`[invalid]` when none)."""
    reference_label: str | None
    """Label parsed from the reference response (`[invalid]` when none)."""
    primary_binary_label: str
    """The binary class of `primary_label` (the task's `binary_of`; the label itself when the
    task has none; `[invalid]` when no label)."""
    reference_binary_label: str | None
    """The binary class of `reference_label`, as for `primary_binary_label`; None when the
    reference failed."""
    primary_parsed: bool
    """Whether the primary response gave one of the task's labels."""
    reference_parsed: bool | None
    """Whether the reference response gave one of the task's labels; None when the reference
    failed."""
    both_parsed: bool | None
    """Whether both responses gave one of the task's labels (the items of `kappa`); None when the
    reference failed."""
    finegrain_match: bool | None
    """Whether both sides gave a label and the labels are the same (case-insensitive); an
    unparsed side is a disagreement."""
    binary_match: bool | None
    """Whether both sides gave a label and the labels' binary classes (the task's
    `binary_of`) are the same; an unparsed side is a disagreement."""
    response_indel_similarity: float | None
    """Normalized Indel similarity of the two final answers (reasoning removed, then
    `normalize_text`): `rapidfuzz.fuzz.ratio / 100` = 2 x longest common character
    subsequence / total length, in [0, 1]. None when both answers are empty."""
    reasoning_indel_similarity: float | None
    """Normalized Indel similarity of the two reasonings, as `response_indel_similarity`;
    None unless both sides reasoned."""
    primary_response: str
    """The primary's final answer, reasoning removed."""
    reference_response: str | None
    """The reference's final answer, reasoning removed; None when the reference failed."""
    primary_reasoning: str
    """The primary's reasoning (`<think>` blocks, harmony analysis channel); empty when it gave
    none."""
    reference_reasoning: str | None
    """The reference's reasoning, as `primary_reasoning`; None when the reference failed."""
    primary_response_chars: int
    """Length in characters of `primary_response`."""
    reference_response_chars: int | None
    """Length in characters of `reference_response`; None when the reference failed."""
    primary_reasoning_chars: int
    """Length in characters of `primary_reasoning` (0 without reasoning)."""
    reference_reasoning_chars: int | None
    """Length in characters of `reference_reasoning`; None when the reference failed."""


@dataclass
class Invariance:
    """The batch-invariance check of one item (`--llmeval-invariance-check N`): the item
    generated again alone (a batch of one, no padding), never from or into the cache, and
    scored with the task's scorer. The batched side is the record's own `response`, `score`
    and `correct`; for a `cached` item that is the cached generation, compared all the same.
    """

    __pydantic_config__ = SCHEMA_CONFIG

    unbatched_response: str | None
    """The response generated alone (batch size 1, uncached); None when that failed."""
    unbatched_score: float | None
    """The unbatched response's score against the target (0..1), by the task's scorer."""
    unbatched_correct: bool | None
    """Whether `unbatched_score` reached the task's `pass_threshold`."""
    changed: bool | None
    """Whether the unbatched response differs from the batched one (exact text comparison);
    None when the unbatched generation failed."""
    score_changed: bool | None
    """Whether the unbatched score differs from the batched `score` (for all-or-nothing
    scorers: whether correctness flipped); None when the unbatched generation failed."""
    error: str | None
    """One-line message when the unbatched generation or its scoring failed (the item itself
    keeps its batched result and outcome); None when the check ran."""


@dataclass
class SampleRecord:
    """One candidate of a sampled item (`Generation.n` > 1)."""

    __pydantic_config__ = SCHEMA_CONFIG

    index: int
    """The sample index, 0..n-1 (with the task seed and the item id it decides the seed)."""
    seed: int | None
    """This candidate's own derived seed (`declare/seeds.py`)."""
    response: str | None
    """The candidate's text; None when its generation failed (`error`)."""
    extracted: str | None
    """The answer the scorer extracted from it; None when none was found or it failed."""
    score: float | None
    """0..1; None when its generation failed."""
    correct: bool
    """Whether `score` reached the task's `pass_threshold` (a failed generation: False, as in
    `accuracy`)."""
    tokens_out: int | None = None
    """Tokens generated, the end token not counted; None when not counted or failed."""
    latency_s: float | None = None
    """The candidate's own latency (see the item's `latency_method`); None when cached."""
    mean_logprob: float | None = None
    """Mean natural-log probability of its generated tokens under the model's unwarped
    distribution (what the `logprob` selector ranks by); None when the backend gives none."""
    cached: bool | None = None
    """Whether it came from the cache."""
    error: str | None = None
    """One-line error when this candidate could not be generated (the others still count)."""
    batch_id: str | None = None
    """Its generation batch (candidates of one item may span batches); None when cached."""
    batch_wall_s: float | None = None
    """Seconds: wall time of that batch; None when cached."""
    batch_energy_j: float | None = None
    """Joules: GPU energy of that batch; None when not measured or cached."""
    batch_peak_w: float | None = None
    """Watts: that batch's sampled peak GPU power; None when not sampled or cached."""


@dataclass
class Votes:
    """How a sampled item's candidates voted and which one its verdict follows."""

    __pydantic_config__ = SCHEMA_CONFIG

    majority: str | None
    """The majority answer over the candidates' extracted answers (unparsed candidates do not
    vote; a tie goes to the answer whose first vote came earliest in sample order); None when
    no candidate gave an answer."""
    majority_votes: int
    """Candidates that gave the majority answer."""
    majority_correct: bool
    """Whether the majority answer's candidates are correct (False with no majority)."""
    agreement: float | None
    """Self-consistency: `majority_votes / n`; None with no majority."""
    correct: int
    """Correct candidates (the `c` of pass@k)."""
    n: int
    """Candidates drawn (failed ones included, counted as wrong)."""
    selected: int | None
    """Index of the candidate the task's selector (`Task(select=...)`) picked; None without a
    selector, or when it could not pick."""
    selected_correct: bool | None
    """Whether the selected candidate is correct; None without a selection."""
    selector: str | None
    """The selector: `logprob`, `shortest`, or a function's `module.qualname`; None: none."""
    pass_by: str
    """What the item's verdict follows: `majority` (default), `selected`, `any` (oracle)."""


@dataclass
class ItemRecord:
    """One dataset row evaluated on one model (or one hand-written test's generation)."""

    __pydantic_config__ = SCHEMA_CONFIG

    id: str
    """Stable item id, `<task>/<split>/<row>` (hand-written tests: the test's name)."""
    nodeid: str
    """The pytest node id, for `--lf`, `-k` and JUnit."""
    task: str
    """The task's name (hand-written tests: the test module's path, e.g. `tests/test_safety.py`)."""
    model: str
    """The model's name as given on the command line (alias, Hub id or `backend:spec`), or the
    arm name given with `--model ARM=SPEC`."""
    split: str
    """The dataset split the task declares (`DataSource.split`, default `test`); `test` for
    hand-written tests."""
    row_index: int
    """0-based index of the row in the task's dataset as loaded (before `--limit`); hand-written
    tests: the index of the generation within the test."""
    source: Literal["task", "test"]
    """`task`: an item collected from a Task; `test`: a generation made by a hand-written test
    through the `llmeval_backend` fixture (its outcome is the test's)."""
    outcome: Outcome
    """`pass`, `fail` (a wrong answer) or `error` (the item could not be evaluated)."""
    error: str | None = None
    """One-line message of an error outcome."""
    arm: str | None = None
    """The arm the item ran in, as its test name's bracket says: the model's name (`--model`,
    or the `ARM=` name), `<model>-<variant>` for a prompt variant when several models run, the
    variant alone with one model. None in records that predate arms (then it is `model`)."""
    variant: str | None = None
    """The task's prompt variant (`Task(variants=...)`) the item ran; None: the task's single
    prompt."""
    label: Label = None
    """The row's value of the task's `label_field` (stratification), if declared."""
    worker: str | None = None
    """xdist worker id (`gw0`) or `main`."""
    target: str | None = None
    """The expected answer (the task's target field or function, as a string); None for
    hand-written tests and when the item errored before the target was known."""
    prompt: str | None = None
    """The prompt exactly as the model saw it (chat template applied)."""
    response: str | None = None
    """The model's full response as the backend returned it, reasoning included (from the cache
    for a cached item); None when nothing was generated."""
    reasoning: str | None = None
    """Reasoning separated from the answer (`<think>` blocks, harmony analysis channel)."""
    extracted: str | None = None
    """The answer the task's scorer extracted from the response (a number, a label, the
    normalized answer); None or `[invalid]` when none was found; None when the item errored
    before scoring."""
    method: str | None = None
    """How the answer was extracted: numbers `strict` (a `#### n` line), `boxed`
    (`\\boxed{n}`), `flexible` (the last number); labels `exact` (the whole answer), `label`
    (a `Label:`/`Answer:` line), `flexible` (free text), `ambiguous` (two different labels);
    `none` when nothing was found. See docs/scoring.md."""
    span: str | None = None
    """Excerpt of the response ending at the extracted answer."""
    score: float | None = None
    """0..1; None when the item errored."""
    correct: bool | None = None
    """Whether `score` reached the task's `pass_threshold`; None when the item has no score.
    `accuracy` counts this, not `outcome` (in agreement runs the outcome is whether the
    labels agree)."""
    latency_s: float | None = None
    """This item's own latency in seconds (see `latency_method`), not its batch's wall time;
    None for a cached item (no model work this run)."""
    latency_method: str | None = None
    """How the backend measured `latency_s` (transformers: batch start until the item's last
    token; vllm: the request's metrics, first scheduled until finished, or, from a vLLM version
    that reports no per-request metrics, the batch wall time, which this then says is not the
    item's own; openai: the item's HTTP request; callable: the call); None for a cached item."""
    tokens_in: int | None = None
    """Prompt tokens; None when the backend does not count tokens."""
    tokens_out: int | None = None
    """Tokens the model generated, the end-of-sequence/stop token not counted; None when the
    backend does not count tokens (a callable that reports no counts)."""
    pad_tokens: int | None = None
    """Padding tokens added to this item's prompt in its generation batch (transformers: left
    padding up to the batch's longest prompt, i.e. that prompt's length minus `tokens_in`);
    None for a backend that does not pad (vllm, openai, callable) and for a cached item."""
    finish_reason: str | None = None
    """Why generation stopped, as the backend says: `stop` (end-of-sequence or a stop string) or
    `length` (`max_new_tokens` reached); openai passes the API's value. None when nothing was
    generated."""
    batch_id: str | None = None
    """The generation batch of this run (unique per run); None for a cached item. A backend
    that takes the worker's whole share at once (vllm, openai) has windows instead: the
    requests that finished one after another in one stretch of wall time and energy."""
    batch_size: int | None = None
    """Requests in the item's generation batch (or window: requests that finished in it);
    None for a cached item."""
    batch_wall_s: float | None = None
    """Seconds: wall time of the item's batch (or window); None for a cached item."""
    cached: bool | None = None
    """True when the generation came from the cache: no model work this run, so the latency,
    batch and energy fields are None (the cache keeps the first run's figures)."""
    energy_j: float | None = None
    """Joules: GPU energy attributed to this item, its generated-token share of
    `batch_energy_j` (an equal split when tokens are not counted); None with `energy_reason`
    when not measured or cached."""
    cpu_energy_j: float | None = None
    """Joules: the item's generated-token share of the CPU package energy (RAPL) during its
    batch, this worker's equal share of the package when several xdist workers run on the host;
    None when not measured, cached, or a remote backend."""
    energy_reason: str | None = None
    """Why energy is null, when it is ("remote backend" for API and callable backends, whose
    energy is not on this machine)."""
    energy_method: str | None = None
    """How `energy_j` was measured and attributed: the token-share split (an equal split when
    tokens are not counted), the sources read (`nvml-energy-counter`, `nvml-power-sampling`,
    `rapl`) and notes on the devices: "gpuN shared by K workers: its energy split equally",
    "gpuN not pinned to this worker: ..." (counted whole, flagged), or devices not declared by
    a user's backend; None when nothing was measured or cached."""
    batch_energy_j: float | None = None
    """Joules: GPU energy of the item's whole batch, summed over the GPUs the model occupies
    (this worker's share of a GPU shared by pinned workers); the model load is metered apart
    (`ModelLoad.load_energy_j`); None when not measured or cached."""
    batch_avg_w: float | None = None
    """Watts: average GPU power during the item's batch, summed over the model's GPUs (this
    worker's share of a shared one; the meter's own average, else `batch_energy_j /
    batch_wall_s`); None when not measured or cached."""
    batch_peak_w: float | None = None
    """Watts: sum over the model's GPUs of each one's highest sampled power during the batch
    (the whole device, even when shared); power sampling only (None with an energy counter,
    unmeasured or cached)."""
    decoding: dict[str, Any] | None = None
    """The decoding settings the backend actually used or sent for this item, by the
    backend's own names (e.g. transformers `do_sample`, `temperature`, `top_p`, `top_k`,
    `repetition_penalty`, `max_new_tokens`, `stop_strings`; openai: the request body's sampling
    fields), with `seed`: this item's derived seed when sampling, None for greedy; None for a
    backend that does not say (a custom backend). Kept for cached items: it is what made the
    text."""
    comparison: Comparison | None = None
    """Agreement runs only: the reference backend's result and the comparison."""
    batch_invariant: bool | None = None
    """Whether the generation came from a batch of prompts of one token length, so with no
    padding (`--llmeval-batch-invariant`; a cached generation under that mode was made so
    too); False: ordinary batching, or the mode does not apply to the backend (it cannot
    count prompt tokens); None: nothing was generated (an error) or a hand-written test."""
    invariance: Invariance | None = None
    """The batch-invariance check of this item when it was among the `--llmeval-invariance-check`
    sample; None otherwise."""
    samples: list[SampleRecord] | None = None
    """Sampled runs (`Generation.n` > 1): every candidate of the item, in sample order (also one
    row each in samples.parquet); the item's own `response`, `extracted` and `score` are those
    of the candidate its verdict follows (`votes`), `correct` the verdict; `tokens_out`,
    energy and `latency_s` cover the candidates generated in this run (sum, sum, slowest;
    `cached` only when every candidate came from the cache). None with one generation."""
    votes: Votes | None = None
    """Sampled runs: the majority vote over the candidates' extracted answers and, when the
    task has a selector, its pick; None with one generation."""
    components: dict[str, float | None] | None = None
    """The score's named components (`Score.components`, e.g. `value_accuracy`, `ref_overlap`,
    `na_recall`), each 0..1, or None where the component does not apply to this item (left out
    of that component's mean); None when the scorer returns none. An item that errored after
    its row was read, under a scorer that says which components apply to a row
    (`scorer.applies(row)`, as `scoring.qa()` does): 0.0 where one applies, None elsewhere;
    other errored items: None (then the task's `components` count it 0 where every scored
    item has the component, and leave it out of one that some items mark N/A). Sampled
    items: the components of the candidate the item's verdict follows."""


# ---- what a task declared and where its rows came from (report.json, per task) ----


@dataclass(frozen=True)
class DataOrigin:
    """Where a task's rows came from, decided once per run (the controller's source policy)."""

    __pydantic_config__ = SCHEMA_CONFIG

    kind: Literal["file", "hub", "generated", "test"]
    """`file`: a local copy; `hub`: a Hugging Face Hub dataset; `generated`: the task's
    `generate` function; `test`: generations of hand-written tests (no dataset)."""
    path: str | None
    """The local file read (absolute), for `file`."""
    hub: str | None
    """The Hub dataset id, for `hub`."""
    config: str | None
    """The Hub dataset config, for `hub`."""
    revision: str | None
    """The Hub revision asked for (None: the default branch, not pinned)."""
    split: str | None
    """The dataset split the task declares (`DataSource.split`)."""
    rows: int | None
    """Rows in the dataset before `--limit` or deselection."""
    rows_used: int | None
    """Rows selected by `--limit` sampling (all rows without it), before `-k` deselection."""
    sha256: str | None
    """SHA-256 (hex) of the rows used: the selected rows after `transform`, as canonical JSON
    (sorted keys), one per line in row order. Equal hashes mean the same inputs."""


@dataclass(frozen=True)
class PromptInfo:
    """The task's prompt: a `ChatPrompt`'s templates, or the name of a prompt function."""

    __pydantic_config__ = SCHEMA_CONFIG

    kind: Literal["chat", "function"]
    """`chat`: a `ChatPrompt` (its templates below); `function`: a prompt function (see
    `function`)."""
    system: str | None
    """The system prompt (`ChatPrompt.system`)."""
    user: str | None
    """The user-turn `str.format` template."""
    answer: str | None
    """The template of the few-shot assistant turns."""
    few_shot: int
    """Number of few-shot rows."""
    few_shot_sha256: str | None
    """SHA-256 (hex) of the few-shot rows as canonical JSON; None without few-shot rows."""
    function: str | None
    """`module.qualname` of a prompt function (then the templates are None)."""
    sha256: str | None = None
    """SHA-256 (hex) of the prompt as canonical JSON: the `ChatPrompt`'s system, user and
    answer templates with its few-shot rows, or the prompt function's `module.qualname`.
    Equal hashes mean the same prompt (None in reports written before it was kept)."""


@dataclass(frozen=True)
class GenerationInfo:
    """The task's generation settings (`Generation`)."""

    __pydantic_config__ = SCHEMA_CONFIG

    max_new_tokens: int
    """Most tokens generated per item (a generation cut there has `finish_reason` `length`)."""
    temperature: float
    """0 means greedy decoding."""
    top_p: float
    """Nucleus-sampling probability mass (1.0: the whole distribution); applies to sampled
    decoding only."""
    stop: list[str]
    """Stop strings: generation ends at the first one produced (empty: none)."""
    seed: int
    """The task seed; each sampled generation is seeded from it, the item id and the sample
    index (matters only for sampled decoding, `temperature` > 0)."""
    top_k: int
    """Keep only the k most likely tokens when sampling (0: no top-k cut)."""
    repetition_penalty: float
    """Repetition penalty every backend pins (1.0: none; never the model's own default)."""
    other: dict[str, Any]
    """Any further `Generation` field, by name."""
    n: int = 1
    """Candidates drawn per item (`Generation.n`, `--llmeval-samples`); 1: one generation."""


@dataclass(frozen=True)
class TaskDeclaration:
    """A task's full declaration, as the run used it."""

    __pydantic_config__ = SCHEMA_CONFIG

    description: str
    """The task's `description` (empty when not given)."""
    prompt: PromptInfo
    """The task's prompt: `ChatPrompt` templates and few-shot hash, or a prompt function's name."""
    generation: GenerationInfo
    """The task's generation settings."""
    target: str
    """The target's row field, or `module.qualname` of the target function."""
    scorer: str
    """The scorer's registered name, or its function name (e.g. `label(toxic, non-toxic)`)."""
    scorer_options: dict[str, Any]
    """The options the scorer was built with, where it exposes them (e.g. `labels`)."""
    labels: list[str] | None
    """The label set of a classification scorer (`scoring.label([...])`), else None."""
    label_field: str | None
    """The row field `--limit` stratifies on."""
    pass_threshold: float
    """The score (0..1) an item must reach to be correct (default 1.0: all-or-nothing)."""
    gates: list[str]
    """The gates the task declares (ini and command-line gates are in `settings.gates`)."""
    reference: str | None
    """The task's own reference model for agreement runs (`--compare-backend` overrides it)."""
    variants: dict[str, PromptInfo] = field(default_factory=dict)
    """The task's prompt variants by name (`Task(variants=...)`), each run as an arm of its
    own with its prompt's hash; empty for a task with a single prompt (then `prompt` is it;
    with variants `prompt` is the first variant's)."""
    models: list[str] | None = None
    """The `--model` arms the task runs on (`Task(models=...)`); None: every model of the run."""
    select: str | None = None
    """The candidate selector of a sampled task (`Task(select=...)`): `logprob`, `shortest` or
    a function's `module.qualname`; None: none (no `rerank@n`)."""
    pass_by: str = "majority"
    """What a sampled item's verdict follows: `majority`, `selected` or `any`."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task-level metrics by name (`Task(metrics=...)`, built by `pytest_llmeval.metrics`):
    `{"kind": "recall" | "precision" | "f1" | "macro_f1", "label": ... or None}`."""
    composites: dict[str, str] = field(default_factory=dict)
    """Weighted composites by name (`Task(composites=...)`), each a weighted sum of metric
    names, e.g. `0.75*value_accuracy + 0.15*ref_overlap + 0.10*na_recall`."""


@dataclass(frozen=True)
class TaskInfo:
    """What the controller needs to know about a task, sent along with each of its records
    (and with the one item of a task that could not run)."""

    __pydantic_config__ = SCHEMA_CONFIG

    name: str
    origin: str | None
    """Where the rows came from (`file:...`, `hub:...`, `generated`); see `data`."""
    split: str | None
    rows: int | None
    """Rows in the task before `--limit` or deselection."""
    gates: list[str] | None = None
    """Gates the task declares; None when unknown (an item whose worker crashed first)."""
    data: DataOrigin | None = None
    """Where the rows came from, with a content hash of the rows used."""
    declaration: TaskDeclaration | None = None
    """The task's declaration (None for hand-written tests and unusable declarations)."""
    no_data: str | None = None
    """Why the task ran no items: its data is missing or the task is broken (None: it ran)."""
    data_missing: bool = False
    """Whether `no_data` is missing data (which `--llmeval-allow-missing` may excuse)."""
    models_absent: bool = False
    """Whether `no_data` says the run has none of the model arms the task runs on
    (`Task(models=...)`): the task is skipped and its gates are not evaluated, never failed."""


def to_json(record: ItemRecord) -> dict[str, Any]:
    """The record as plain JSON types (a dict of str, numbers, bools, None, lists, dicts)."""
    # Every field is a scalar, a flat part (Comparison, Invariance, Votes) or a list of flat
    # parts (samples): a shallow copy of each
    # is the whole conversion, and it runs several times per item (dataclasses.asdict
    # deep-copies each value).
    data = dict(vars(record))
    if record.comparison is not None:
        data["comparison"] = dict(vars(record.comparison))
    if record.invariance is not None:
        data["invariance"] = dict(vars(record.invariance))
    if record.samples is not None:
        data["samples"] = [dict(vars(sample)) for sample in record.samples]
    if record.votes is not None:
        data["votes"] = dict(vars(record.votes))
    return data


def task_info_to_json(info: TaskInfo) -> dict[str, Any]:
    """A TaskInfo as plain JSON types."""
    return asdict(info)


def from_json(data: dict[str, Any]) -> ItemRecord:
    """A record from `to_json`'s output (raises TypeError on unknown or missing keys)."""
    comparison = data.get("comparison")
    invariance = data.get("invariance")
    samples = data.get("samples")
    votes = data.get("votes")
    return ItemRecord(
        **{
            **data,
            "comparison": Comparison(**comparison) if comparison is not None else None,
            "invariance": Invariance(**invariance) if invariance is not None else None,
            "samples": [SampleRecord(**s) for s in samples] if samples is not None else None,
            "votes": Votes(**votes) if votes is not None else None,
        }
    )


def task_info_from_json(data: dict[str, Any]) -> TaskInfo:
    """A TaskInfo from `task_info_to_json` output."""
    origin = data.get("data")
    declared = data.get("declaration")
    if declared is not None:
        declared = TaskDeclaration(
            **{
                **declared,
                "prompt": PromptInfo(**declared["prompt"]),
                "variants": {
                    name: PromptInfo(**info)
                    for name, info in (declared.get("variants") or {}).items()
                },
                "generation": GenerationInfo(**declared["generation"]),
            }
        )
    return TaskInfo(
        **{
            **data,
            "data": DataOrigin(**origin) if origin is not None else None,
            "declaration": declared,
        }
    )
