"""Test items: one per dataset row (x model), plus one per task that cannot run at all.

An item does its model work in `setup`, so a backend or data problem is a pytest *error*, and
only the verdict in `runtest`, so a wrong answer is a *failure* with a one-line message (no
traceback) that `--lf` reruns. Each item leaves one plain-JSON record in `user_properties`;
records cross the xdist channel and feed the controller's aggregation and reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import pytest

from pytest_llmeval.backends import BackendError, GenerationRequest
from pytest_llmeval.data import RowError
from pytest_llmeval.engine import Engine
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.tasks import Task, TaskError

RECORD_KEY = "llmeval"
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.spec = spec
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
        return GenerationRequest(self.nodeid, messages, self.task.generation)

    def setup(self) -> None:
        self.record = self._base_record()
        self.user_properties.append((RECORD_KEY, self.record))
        try:
            self._evaluate()
        except Exception as exc:
            message = _error_message(exc)
            self.record.update(outcome="error", error=message)
            raise ItemError(message) from exc

    def _evaluate(self) -> None:
        if isinstance(self.row, RowError):
            raise ItemError(f"data error: {self.row.message}")
        target = self.task.target_for(self.row)
        self.record["target"] = target
        engine, upcoming = self._engine()
        generation = engine.result_for(self, upcoming(self))
        score = self.task.scorer(generation.text, target, self.row)
        passed = score.value >= self.task.pass_threshold
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
        )

    def runtest(self) -> None:
        if self.record.get("outcome") == "fail":
            raise ItemMiss(miss_message(self.record))

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


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, ItemError):
        return str(exc)
    if isinstance(exc, BackendError | TaskError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}".strip()
