"""Test items: one per dataset row (x model), plus one per task that cannot run at all.

An item does its model work in `setup`, so a backend or data problem is a pytest *error*, and
only the verdict in `runtest`, so a wrong answer is a *failure* with a one-line message (no
traceback) that `--lf` reruns. Each item leaves one plain-JSON record, attached to its test
reports as `report.llmeval_record` (extra report attributes cross the xdist channel), which
feeds the controller's aggregation and reports; a few flat values also go into
`user_properties`, where JUnit XML shows them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import pytest

from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.declare.data import RowError
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Task, TaskError
from pytest_llmeval.run.engine import Engine
from pytest_llmeval.score.agreement import compare_item
from pytest_llmeval.score.scorers import Score

RECORD_ATTRIBUTE = "llmeval_record"
# Record fields shown as JUnit properties (prefixed "llmeval.").
JUNIT_FIELDS = (
    "score", "extracted", "target", "method", "outcome", "latency_s", "tokens_in",
    "tokens_out", "energy_j", "cached", "reference_model", "binary_match",
)  # fmt: skip
# `path::<task>/<split>/<row>[<model>]`: the model suffix exists when several models run.
_EVAL_ITEM = re.compile(r"::[\w.\-]+/[^/\[\]]+/\d+(?:\[(?P<model>.+)\])?$")
Upcoming = Callable[[pytest.Item], Iterable[Any]]


class ItemMiss(Exception):
    """A wrong answer: shown as its one-line message."""


class ItemError(Exception):
    """A data or backend problem: shown as its one-line message, counted as an error."""


class EvalItem(pytest.Item):
    """One dataset row evaluated on one model."""

    def __init__(
        self,
        *,
        task: Task,
        spec: ModelSpec,
        row_index: int,
        row: Mapping[str, Any] | RowError,
        item_id: str,
        context: Mapping[str, Any],
        engine: Callable[[], tuple[Engine, Upcoming]],
        reference: ModelSpec | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.spec = spec
        self.reference = reference
        self.row_index = row_index
        self.row = row
        self.item_id = item_id
        self.context = context
        self._engine = engine
        self.record: dict[str, Any] = {}

    @property
    def model_spec(self) -> ModelSpec:
        return self.spec

    def batch_key(self) -> Hashable:
        return (self.spec.name, self.task.name, self.task.generation)

    def request(self) -> GenerationRequest:
        """The generation request for this row; raises ItemError for an unusable row."""
        if isinstance(self.row, RowError):
            raise ItemError(f"data error: {self.row.message}")
        try:
            messages = self.task.messages(self.row)
        except TaskError as exc:
            raise ItemError(f"task {self.task.name}: {exc}") from None
        return GenerationRequest(messages, self.task.generation)

    def setup(self) -> None:
        self.record = self._base_record()
        try:
            self._evaluate()
        except Exception as exc:
            message = _error_message(exc)
            self.record.update(outcome="error", error=message)
            raise ItemError(message) from exc
        finally:
            self.user_properties.extend(
                (f"llmeval.{name}", self.record[name])
                for name in JUNIT_FIELDS
                if self.record.get(name) is not None
            )

    def _evaluate(self) -> None:
        if isinstance(self.row, RowError):
            raise ItemError(f"data error: {self.row.message}")
        target = self.task.target_for(self.row)
        self.record["target"] = target
        engine, upcoming = self._engine()
        self.record["worker"] = engine.worker
        generation = engine.result_for(self, upcoming(self))
        score = _checked(self.task.scorer(generation.text, target, self.row), self.task.name)
        passed = score.value >= self.task.pass_threshold
        if self.reference is not None:
            passed = self._compare(engine, upcoming, generation.text, score, target)
        self.record.update(
            prompt=generation.prompt,
            response=generation.text,
            reasoning=score.reasoning,
            extracted=score.extracted,
            method=score.method,
            span=score.span,
            score=score.value,
            outcome="pass" if passed else "fail",
            latency_s=generation.latency_s,
            latency_method=generation.latency_method,
            tokens_in=generation.tokens_in,
            tokens_out=generation.tokens_out,
            finish_reason=generation.finish_reason,
            batch_id=generation.batch_id,
            batch_size=generation.batch_size,
            batch_wall_s=generation.batch_wall_s,
            cached=generation.cached,
            energy_j=generation.energy_j,
            cpu_energy_j=generation.cpu_energy_j,
            energy_reason=generation.energy_reason,
            energy_method=generation.energy_method,
            batch_energy_j=generation.batch_energy_j,
            batch_avg_w=generation.batch_avg_w,
            batch_peak_w=generation.batch_peak_w,
        )

    def _compare(
        self,
        engine: Engine,
        upcoming: Upcoming,
        primary_text: str,
        primary: Score,
        target: str,
    ) -> bool:
        """Generate on the reference backend too; the item passes when the labels agree."""
        shadow = ReferenceRequest(self)
        others = (
            ReferenceRequest(item)
            for item in upcoming(self)
            if isinstance(item, EvalItem) and item.reference is not None
        )
        generation = engine.result_for(shadow, others)
        assert self.reference is not None and isinstance(self.row, Mapping)
        score = _checked(self.task.scorer(generation.text, target, self.row), self.task.name)
        comparison = compare_item(
            primary_text, generation.text, primary.extracted, score.extracted, self.task.binary_of
        )
        self.record.update(
            reference_model=self.reference.name,
            reference_raw_response=generation.text,
            reference_extracted=score.extracted,
            reference_score=score.value,
            reference_latency_s=generation.latency_s,
            reference_tokens_in=generation.tokens_in,
            reference_tokens_out=generation.tokens_out,
            reference_cached=generation.cached,
            text=_input_text(self.request().messages),
            **comparison,
        )
        return bool(comparison["binary_match"])

    def runtest(self) -> None:
        if self.record.get("outcome") == "fail":
            if self.reference is not None:
                raise ItemMiss(disagreement_message(self.record))
            raise ItemMiss(miss_message(self.record))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        # A miss is its one-line message. Returning it here, rather than replacing the
        # report's longrepr afterwards, skips building a traceback (source parsing included)
        # for every wrong answer: that cost ~0.17 s per miss.
        if isinstance(excinfo.value, ItemMiss | ItemError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.item_id

    def _base_record(self) -> dict[str, Any]:
        label = None
        if self.task.label_field and isinstance(self.row, Mapping):
            label = self.row.get(self.task.label_field)
        return {
            "id": self.item_id,
            "nodeid": self.nodeid,
            "task": self.task.name,
            "model": self.spec.name,
            "row_index": self.row_index,
            "label": label,
            "target": None,
            "prompt": None,
            "response": None,
            "extracted": None,
            "score": None,
            "outcome": "error",
            "error": None,
            "latency_s": None,
            "tokens_in": None,
            "tokens_out": None,
            **self.context,
        }


class ReferenceRequest:
    """An item's request as sent to the reference backend (its own engine key and model)."""

    def __init__(self, item: EvalItem) -> None:
        self.item = item
        assert item.reference is not None
        self.spec: ModelSpec = item.reference

    @property
    def nodeid(self) -> str:
        return f"{self.item.nodeid}@reference"

    @property
    def model_spec(self) -> ModelSpec:
        return self.spec

    def batch_key(self) -> Hashable:
        return (self.spec.name, self.item.task.name, self.item.task.generation)

    def request(self) -> GenerationRequest:
        return self.item.request()


def _input_text(messages: list[dict[str, str]]) -> str:
    """The item's own input: the content of the last user message."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def disagreement_message(record: Mapping[str, Any]) -> str:
    """`labels differ: primary toxic, reference non-toxic (similarity 0.42)`."""
    return (
        f"labels differ: {record.get('model')} {record.get('primary_label')}, "
        f"{record.get('reference_model')} {record.get('reference_label')} "
        f"(response similarity {record.get('response_similarity', 0):.2f})"
    )


class TaskProblemItem(pytest.Item):
    """Stands for a whole task that cannot run: skipped (data missing) or an error (bad task)."""

    def __init__(self, *, problem: str, skip: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem
        self.skip = skip

    def setup(self) -> None:
        if self.skip:
            pytest.skip(self.problem)
        raise ItemError(self.problem)

    def runtest(self) -> None:  # never reached: setup always skips or raises
        raise AssertionError("unreachable")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name


def is_eval_item(nodeid: str) -> bool:
    """Whether a node id names an eval item (works where only ids are known: xdist controller)."""
    return _EVAL_ITEM.search(nodeid) is not None


def model_of(nodeid: str) -> str | None:
    """The `[model]` suffix of an eval item id (None with a single model)."""
    match = _EVAL_ITEM.search(nodeid)
    return match["model"] if match else None


def miss_message(record: Mapping[str, Any]) -> str:
    """`expected 18, got 32 (flexible: "... = 32")`."""
    got = record.get("extracted")
    got_text = "nothing" if got is None else str(got)
    span = record.get("span") or str(record.get("response") or "")[-60:]
    span = " ".join(span.split())
    return f'expected {record.get("target")}, got {got_text} ({record.get("method")}: "{span}")'


def _checked(score: Score, task: str) -> Score:
    """A scorer's result, refused unless its value is a number in [0, 1]."""
    value = float(score.value)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ItemError(f"task {task}: scorer returned {score.value!r}; scores must be in [0, 1]")
    return score


def _error_message(exc: BaseException) -> str:
    """One line: our own ItemError as is, anything else with its type name in front."""
    if isinstance(exc, ItemError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".strip()
