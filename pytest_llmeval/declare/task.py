"""Declaring an evaluation task: where its rows come from, how a row becomes a chat prompt,
what the right answer is, how a response is scored, how to generate, and which gates hold.

A task is declared at module level in a `test_*.py` file under `evals/`; the plugin collects
every `Task` it finds there and turns each dataset row into one test item::

    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    gsm8k = Task(
        name="gsm8k",
        data=DataSource(hub="openai/gsm8k", config="main", split="test", files="gsm8k/test.jsonl"),
        prompt=ChatPrompt(user="{question}\\nEnd with a line '#### <number>'."),
        target=lambda row: scoring.gsm8k_target(row["answer"]),
        scorer=scoring.numeric,
        generation=Generation(max_new_tokens=256),
        gates=["accuracy >= 0.3"],
    )

This module imports neither torch nor pytest: a task is plain data.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from pytest_llmeval.analyze.composite import CompositeError
from pytest_llmeval.declare.declared import assign, is_int, is_number, keep_problem, require
from pytest_llmeval.declare.own_metrics import checked_metrics
from pytest_llmeval.score.scorers import Score

Row = Mapping[str, Any]
Message = dict[str, str]
PromptBuilder = Callable[[Row], list[Message]]
ScoreFn = Callable[[str, str, Row], Score]


class TaskError(ValueError):
    """A task declaration or one of its rows cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class DataSource:
    """Where a task's rows come from.

    Resolution order: `files` under the data directory (`--llmeval-data-dir` / `LLMEVAL_DATA_DIR`,
    or an absolute path), then the Hub dataset `hub` (config `config`, split `split`) through
    `datasets.load_dataset`, then `generate` (rows made in code, needing no download).
    `files` may be jsonl, json, csv or parquet; `csv_sep` is the csv separator. `transform`
    maps every loaded row to the fields the task uses, so one task can read differently shaped
    sources (a Hub dataset and a local file with other column names).
    """

    hub: str | None = None
    config: str | None = None
    split: str = "test"
    files: str | None = None
    csv_sep: str = ","
    generate: Callable[[], Iterable[Row]] | None = None
    revision: str | None = None
    transform: Callable[[Row], Row] | None = None
    # Why this source cannot be used (unknown fields, bad values), else None; see Task.problem.
    problem: str | None = field(default=None, init=False, compare=False, repr=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        keep_problem(self, assign(self, args, kwargs), self._check)

    def _check(self) -> None:
        for name in ("hub", "config", "revision"):
            value = getattr(self, name)
            require(
                value is None or isinstance(value, str),
                f"DataSource.{name} must be a string or None, got {value!r}",
            )
        if isinstance(self.files, os.PathLike):
            object.__setattr__(self, "files", os.fspath(self.files))
        require(
            self.files is None or isinstance(self.files, str),
            f"DataSource.files must be a file path (str), got {self.files!r}",
        )
        # The split is part of every item id (`task/split/0042`), so it must fit one.
        require(
            isinstance(self.split, str) and re.fullmatch(r"[^/\[\]\s]+", self.split) is not None,
            "DataSource.split must be a split name such as 'test' (no '/', '[', ']' or "
            f"spaces), got {self.split!r}",
        )
        require(
            isinstance(self.csv_sep, str) and self.csv_sep != "",
            f"DataSource.csv_sep must be a non-empty string, got {self.csv_sep!r}",
        )
        for name in ("generate", "transform"):
            value = getattr(self, name)
            require(
                value is None or callable(value),
                f"DataSource.{name} must be a function or None, got {type(value).__name__}",
            )
        require(
            not (self.hub is None and self.files is None and self.generate is None),
            "DataSource needs at least one of hub=, files= or generate=",
        )


@dataclass(frozen=True)
class Generation:
    """Generation settings; `temperature == 0` means greedy decoding (the default).

    Every backend sends or pins all of them explicitly (never the model's or the server's own
    defaults): `top_k` 0 means no top-k cut, `repetition_penalty` 1.0 means none. `seed` is the
    task seed: each (item, sample) draws with its own seed derived from it and the item id
    (`pytest_llmeval.declare.seeds.sample_seed`), so a sampled draw does not depend on its
    batch-mates, the batch size, `-n` or where a run resumed.

    `n` > 1 draws that many candidates per item (sampling only: it needs `temperature` > 0);
    each is generated, cached and seeded on its own, so `n` is not part of one draw's settings
    (`draw_dict`): raising it from 5 to 8 generates only the 3 new candidates.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    top_k: int = 0
    repetition_penalty: float = 1.0
    n: int = 1
    # Why these settings cannot be used, else None; see Task.problem.
    problem: str | None = field(default=None, init=False, compare=False, repr=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        keep_problem(self, assign(self, args, kwargs), self._check)

    def _check(self) -> None:
        tokens, temperature, top_p = self.max_new_tokens, self.temperature, self.top_p
        require(
            is_int(tokens) and tokens >= 1,
            f"Generation.max_new_tokens must be an integer >= 1, got {tokens!r}",
        )
        require(
            is_number(temperature) and temperature >= 0,
            f"Generation.temperature must be a number >= 0 (0: greedy), got {temperature!r}",
        )
        require(
            is_number(top_p) and 0 < top_p <= 1,
            f"Generation.top_p must be a number in (0, 1], got {top_p!r}",
        )
        require(
            is_int(self.top_k) and self.top_k >= 0,
            f"Generation.top_k must be an integer >= 0 (0: no top-k cut), got {self.top_k!r}",
        )
        require(
            is_number(self.repetition_penalty) and self.repetition_penalty > 0,
            "Generation.repetition_penalty must be a number > 0 (1.0: none), "
            f"got {self.repetition_penalty!r}",
        )
        require(is_int(self.seed), f"Generation.seed must be an integer, got {self.seed!r}")
        require(
            is_int(self.n) and self.n >= 1,
            f"Generation.n must be an integer >= 1 (candidates per item), got {self.n!r}",
        )
        require(
            self.n == 1 or temperature > 0,
            f"Generation.n={self.n} draws {self.n} candidates per item, which needs sampling: "
            "set temperature > 0 (e.g. temperature=0.7); greedy decoding gives one answer",
        )
        # Accept a list from users but keep the dataclass hashable (it keys batches and caches).
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        require(
            isinstance(stop, Iterable) and all(isinstance(s, str) for s in stop),
            f"Generation.stop must be a string or a list of strings, got {self.stop!r}",
        )
        object.__setattr__(self, "stop", tuple(stop))

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (temperature 0)."""
        return self.temperature == 0

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON (the declaration in the report)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def draw_dict(self) -> dict[str, Any]:
        """The settings of one draw as plain JSON, without `n` (part of the generation cache
        key, and what a callable backend is given: each call makes one candidate)."""
        return {name: value for name, value in self.as_dict().items() if name != "n"}


@dataclass(frozen=True)
class ChatPrompt:
    """Builds chat messages from a row: optional system prompt, few-shot exemplars, user turn.

    `user` and `answer` are `str.format` templates over the row's fields; `few_shot` rows are
    rendered as user/assistant pairs with the same templates before the item's own user turn.
    """

    user: str
    system: str | None = None
    few_shot: Sequence[Row] = ()
    answer: str = "{answer}"

    def fields(self) -> set[str]:
        """Row fields the user template needs (checked against the data before any generation)."""
        # "{choices[0]}" and "{meta.id}" need the fields "choices" and "meta".
        names = (name for _, name, _, _ in string.Formatter().parse(self.user) if name)
        return {re.split(r"[.\[]", name, maxsplit=1)[0] for name in names}

    def __call__(self, row: Row) -> list[Message]:
        """The chat messages for `row` (raises TaskError naming a missing field)."""
        messages: list[Message] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        for shot in self.few_shot:
            messages.append({"role": "user", "content": _render(self.user, shot)})
            messages.append({"role": "assistant", "content": _render(self.answer, shot)})
        messages.append({"role": "user", "content": _render(self.user, row)})
        return messages


def _render(template: str, row: Row) -> str:
    try:
        return template.format_map(row)
    except KeyError as exc:
        raise TaskError(
            f"prompt template needs field {exc.args[0]!r}, row has {sorted(row)}"
        ) from None


SELECTORS = ("logprob", "shortest")
"""The built-in candidate selectors (`Task(select=...)`)."""
PASS_BY = ("majority", "selected", "any")
"""What a sampled item's verdict may follow (`Task(pass_by=...)`)."""


@dataclass(frozen=True)
class Candidate:
    """One sampled candidate as a selector sees it."""

    index: int
    """Its sample index."""
    text: str
    """The generated text."""
    extracted: str | None
    """The answer the task's scorer extracted (None when none was found)."""
    mean_logprob: float | None
    """Mean log-probability of its tokens; None when the backend gives none."""
    tokens_out: int | None
    """Tokens generated; None when not counted."""


@dataclass(frozen=True)
class Task:
    """An evaluation: one test item per dataset row.

    `target` is a row field name or a function of the row returning the expected answer as a
    string. `scorer(response, target, row)` returns a `Score`; an item passes when its score
    value is at least `pass_threshold`. `scorer` may also be the name of a registered scorer
    (`"numeric"`, `"exact"`, or one a `pytest_llmeval_make_scorer` hook provides).
    `label_field` names the field used for stratified sampling under `--limit`. `gates` are
    strings such as `"accuracy >= 0.6"`.

    Agreement runs: `reference` names a second model (same syntax as `--model`, overridden by
    `--compare-backend`); every item then runs on both and passes when their labels agree.
    `binary_of` maps a fine-grained label to its binary class for the binary agreement rate.

    Arms: `variants` maps a name to a prompt (anything `prompt=` takes) instead of `prompt`;
    every variant runs on every model, each an arm of its own (`gsm8k/test/0042[cot]`, with
    several models `[qwen7b-cot]`). `models` names the `--model` arms this task runs on (all
    of the run's when None); a run with none of them skips the task, saying which it needs.

    Sampling (`generation=Generation(n=5, temperature=0.7)` or `--llmeval-samples 5`): every
    item draws n candidates. `select` picks one of them, for `rerank@n`: `"logprob"` (highest
    mean token log-probability), `"shortest"`, or a function `(candidates) -> index` of
    `Candidate`s (text, extracted answer, mean log-probability). `pass_by` says what the
    item's verdict follows: `"majority"` (the majority vote, default), `"selected"` (the
    selector's pick) or `"any"` (the oracle: any correct candidate).

    Task-level metrics and composites: `metrics` maps a name to a figure over the task's
    records built by `pytest_llmeval.metrics` (`recall("is_blank")`, `precision(label)`,
    `f1(label)`, `macro_f1()`); `composites` maps a name to a weighted sum of metric names
    (`"0.75*value_accuracy + 0.15*ref_overlap + 0.10*na_recall"`): score components, task
    metrics, label metrics (`f1_<label>`, `macro_f1`) or `accuracy`, `mean_score`,
    `parse_rate`, `error_rate`. Each is reported with a bootstrap interval and gated by name.
    """

    name: str
    data: DataSource
    prompt: PromptBuilder | ChatPrompt | None
    target: str | Callable[[Row], str]
    scorer: ScoreFn | str
    generation: Generation = field(default_factory=Generation)
    gates: Sequence[str] = ()
    label_field: str | None = None
    pass_threshold: float = 1.0
    description: str = ""
    reference: str | None = None
    binary_of: Callable[[str], str] | None = None
    variants: Mapping[str, PromptBuilder | ChatPrompt] | None = None
    models: Sequence[str] | None = None
    select: str | Callable[[Sequence[Candidate]], int] | None = None
    pass_by: str = "majority"
    metrics: Mapping[str, Mapping[str, Any]] | None = None
    composites: Mapping[str, str] | None = None
    # Why this declaration cannot run (unknown or missing fields, bad values), else None.
    problem: str | None = field(default=None, init=False, compare=False, repr=False)

    def __init__(self, **kwargs: Any) -> None:
        # A hand-written init so that a misspelt field names the field and its likely fix.
        # The problem is kept, not raised: raising at import would make pytest abandon the
        # whole session over one task; collection turns it into one error item instead.
        problem = assign(self, (), kwargs)
        if problem is None:
            try:
                self._validate(kwargs)
            except TaskError as exc:
                problem = str(exc)
        object.__setattr__(self, "problem", problem)

    def _validate(self, kwargs: dict[str, Any]) -> None:
        required = ("name", "data", "target", "scorer")
        missing = [n for n in required if n not in kwargs]
        if "prompt" not in kwargs and "variants" not in kwargs:
            missing.insert(2, "prompt")
        if missing:
            raise TaskError(f"Task is missing required field(s): {', '.join(missing)}")
        if not isinstance(self.name, str) or not re.fullmatch(r"[\w.\-]+", self.name):
            raise TaskError(
                f"Task name must be a non-empty word (letters, digits, _ . -), got {self.name!r}"
            )
        if not isinstance(self.data, DataSource):
            raise TaskError(f"Task {self.name}: data= must be a DataSource")
        if not isinstance(self.generation, Generation):
            raise TaskError(f"Task {self.name}: generation= must be a Generation")
        # A bad DataSource(...) or Generation(...) kept its problem for this moment.
        for part in (self.data, self.generation):
            if part.problem:
                raise TaskError(part.problem)
        if not (callable(self.scorer) or isinstance(self.scorer, str)):
            raise TaskError(
                f"Task {self.name}: scorer= must be a function (response, target, row) -> Score "
                f"or the name of a registered scorer, got {type(self.scorer).__name__}"
            )
        object.__setattr__(self, "gates", tuple(self.gates))
        self._check_arms()
        self._check_sampling()
        self._check_metrics()

    def _check_metrics(self) -> None:
        """`metrics`, `composites` and the gates' names (declare/own_metrics.py)."""
        for name, given in (("metrics", self.metrics), ("composites", self.composites)):
            if given is not None and not isinstance(given, Mapping):
                raise TaskError(f"Task {self.name}: {name}= must be a dict of name -> ...")
        try:
            found, composites = checked_metrics(
                self.scorer, self.metrics or {}, self.composites or {}, self.gates, self.name
            )
        except CompositeError as exc:
            raise TaskError(f"Task {self.name}: {exc}") from None
        object.__setattr__(self, "metrics", found)
        object.__setattr__(self, "composites", composites)

    def _check_sampling(self) -> None:
        """`select` a built-in name or a function; `pass_by` one of PASS_BY."""
        if not (self.select is None or callable(self.select) or self.select in SELECTORS):
            raise TaskError(
                f"Task {self.name}: select= must be {' or '.join(map(repr, SELECTORS))} or a "
                f"function (candidates) -> index, got {self.select!r}"
            )
        if self.pass_by not in PASS_BY:
            raise TaskError(
                f"Task {self.name}: pass_by= must be one of {', '.join(map(repr, PASS_BY))}, "
                f"got {self.pass_by!r}"
            )
        if self.pass_by == "selected" and self.select is None:
            raise TaskError(
                f"Task {self.name}: pass_by='selected' needs a selector: add select='logprob', "
                "select='shortest' or select=<function>"
            )

    def _check_arms(self) -> None:
        """`prompt` xor `variants` (names fit an id); `models` a list of arm names."""
        if self.variants is not None:
            if self.prompt is not None:
                raise TaskError(
                    f"Task {self.name}: give prompt= or variants=, not both (put the single "
                    "prompt among the variants under a name of its own)"
                )
            if not isinstance(self.variants, Mapping) or not self.variants:
                raise TaskError(
                    f"Task {self.name}: variants= must be a non-empty dict of name -> prompt, "
                    f"e.g. {{'plain': ChatPrompt(...), 'cot': ChatPrompt(...)}}"
                )
            for variant, prompt in self.variants.items():
                if not isinstance(variant, str) or not re.fullmatch(r"[\w.\-]+", variant):
                    raise TaskError(
                        f"Task {self.name}: variant name {variant!r} must be a word (letters, "
                        "digits, _ . -): it goes into item ids"
                    )
                if not callable(prompt):
                    raise TaskError(
                        f"Task {self.name}: variant {variant!r} must be a ChatPrompt or a "
                        f"function row -> messages, got {type(prompt).__name__}"
                    )
            object.__setattr__(self, "variants", dict(self.variants))
        elif not callable(self.prompt):
            raise TaskError(
                f"Task {self.name}: prompt= must be a ChatPrompt or a function row -> "
                f"messages, got {type(self.prompt).__name__}"
            )
        if self.models is not None:
            models = [self.models] if isinstance(self.models, str) else self.models
            if not models or not all(isinstance(m, str) and m for m in models):
                raise TaskError(
                    f"Task {self.name}: models= must be a list of --model arm names, "
                    f"e.g. ['pipeline'], got {self.models!r}"
                )
            object.__setattr__(self, "models", tuple(models))

    def prompts(self) -> dict[str | None, PromptBuilder | ChatPrompt]:
        """Variant name -> prompt; `{None: prompt}` for a task with a single prompt."""
        if self.variants is not None:
            return {name: prompt for name, prompt in self.variants.items()}
        assert self.prompt is not None  # checked at declaration
        return {None: self.prompt}

    def messages(self, row: Row, variant: str | None = None) -> list[Message]:
        """The chat messages for one row under one prompt variant (None: the task's single
        prompt); raises TaskError naming a missing field, or what a prompt function returned
        instead of chat messages."""
        messages = self.prompts()[variant](row)
        if not _is_chat(messages):
            raise TaskError(
                "the prompt function must return a list of chat messages "
                "[{'role': 'user', 'content': ...}], got "
                f"{type(messages).__name__} {_short(messages)}"
            )
        return messages

    def target_for(self, row: Row) -> str:
        """The expected answer for one row, as a string."""
        if callable(self.target):
            return str(self.target(row))
        if self.target not in row:
            raise TaskError(
                f"task {self.name}: target field {self.target!r} not in row (fields: {sorted(row)})"
            )
        return str(row[self.target])

    def required_fields(self) -> set[str]:
        """Row fields the declaration names directly (checked before any generation)."""
        needed: set[str] = set()
        for prompt in self.prompts().values():
            if isinstance(prompt, ChatPrompt):
                needed |= prompt.fields()
        if isinstance(self.target, str):
            needed.add(self.target)
        if self.label_field:
            needed.add(self.label_field)
        return needed


def _is_chat(messages: object) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str) and "content" in m
            for m in messages
        )
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
