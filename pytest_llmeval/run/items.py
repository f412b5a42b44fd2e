"""Test items: one per dataset row (x model), plus one per task that cannot run at all.

An item does its model work in `setup`, so a backend or data problem is a pytest *error*, and
only the verdict in `runtest`, so a wrong answer is a *failure* with a one-line message (no
traceback) that `--lf` reruns. Each item leaves one `ItemRecord`; the plugin sends it to the
controller once, with the item's teardown report, and a few flat values go into
`user_properties`, where JUnit XML shows them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from typing import Any

import pytest

from pytest_llmeval.analyze.plain import RecordValueError, plain_record
from pytest_llmeval.analyze.record import Comparison, ItemRecord, TaskInfo
from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.declare.data import RowError
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, ScoreFn, Task, TaskError
from pytest_llmeval.report.junit import junit_properties
from pytest_llmeval.run import records, samples
from pytest_llmeval.run.invariance import check_unbatched
from pytest_llmeval.run.worker import Worker, worker_of
from pytest_llmeval.score.agreement import compare_item
from pytest_llmeval.score.scorers import Score, TargetError


class ItemMiss(Exception):
    """A wrong answer: shown as its one-line message."""


class ItemError(Exception):
    """A data or backend problem: shown as its one-line message, counted as an error."""


class EvalItem(pytest.Item):
    """One dataset row evaluated on one model under one prompt variant (one arm)."""

    def __init__(
        self,
        *,
        task: Task,
        task_info: TaskInfo,
        scorer: ScoreFn,
        spec: ModelSpec,
        row_index: int,
        row: Mapping[str, Any] | RowError,
        item_id: str,
        reference: ModelSpec | None = None,
        invariance_check: bool = False,
        arm: str | None = None,
        variant: str | None = None,
        generation: Generation | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.generation = generation or task.generation
        """The task's generation settings with the command line's sampling overrides."""
        self.arm = arm or spec.name
        """The item's arm (`pytest_llmeval.declare.ids.arm_name`)."""
        self.variant = variant
        """The task's prompt variant this item runs (None: its single prompt)."""
        self.task = task
        self.task_info = task_info
        self.scorer = scorer
        self.spec = spec
        self.reference = reference
        self.row_index = row_index
        self.row = row
        self.item_id = item_id
        self.invariance_check = invariance_check
        """In the `--llmeval-invariance-check` sample: generated again alone and compared."""
        self.record: ItemRecord | None = None

    @property
    def model_spec(self) -> ModelSpec:
        """The model this item runs on (the engine batches items by it)."""
        return self.spec

    def batch_key(self) -> Hashable:
        """Items with equal keys may share a generation batch (a task's prompt variants do:
        their requests differ only in their messages)."""
        return (self.spec.name, self.task.name, self.generation)

    def request(self) -> GenerationRequest:
        """The generation request for this row; raises ItemError for an unusable row."""
        if isinstance(self.row, RowError):
            raise ItemError(f"data error: {self.row.message}")
        try:
            messages = self.task.messages(self.row, self.variant)
        except TaskError as exc:
            raise ItemError(f"task {self.task.name}: {exc}") from None
        return GenerationRequest(messages, self.generation, item_id=self.item_id)

    def facts(self) -> records.ItemFacts:
        """What this item is, for its record."""
        label = None
        if self.task.label_field and isinstance(self.row, Mapping):
            label = self.row.get(self.task.label_field)
        split = self.task_info.split or ""
        return records.ItemFacts(
            self.item_id,
            self.nodeid,
            self.task.name,
            self.spec.name,
            split,
            self.row_index,
            label,
            arm=self.arm,
            variant=self.variant,
        )

    def setup(self) -> None:
        """Generate (batched with the upcoming items), score, and keep the record."""
        worker = worker_of(self.config)
        target: str | None = None
        try:
            if isinstance(self.row, RowError):
                raise ItemError(f"data error: {self.row.message}")
            target = self.task.target_for(self.row)
            if worker.smoke is not None:  # --llmeval-smoke: each model tried first (run/smoke.py)
                worker.smoke.before(self, worker.upcoming(self))
            self.record = self._plain(self._evaluate(worker, self.row, target))
        except Exception as exc:
            message = _error_message(exc, self.task.name)
            # Row and target read: the scorer may say which of its components this row has.
            row = self.row if target is not None and isinstance(self.row, Mapping) else None
            self.record = records.errored(
                self.facts(), worker=worker.name, target=target, error=message,
                components=None if row is None else records.error_components(self.scorer, row),
            )  # fmt: skip
            raise ItemError(message) from exc
        finally:
            if self.record is not None:
                self.user_properties.extend(junit_properties(self.record))
        if self.record.error is not None:
            # Only the reference failed: the record keeps the primary's side, the item errors.
            raise ItemError(self.record.error)

    def _plain(self, record: ItemRecord) -> ItemRecord:
        """The record in builtin JSON types (it crosses the xdist channel), or an ItemError."""
        try:
            return plain_record(record)
        except RecordValueError as exc:
            raise ItemError(f"task {self.task.name}: {exc}") from None

    def _evaluate(self, worker: Worker, row: Mapping[str, Any], target: str) -> ItemRecord:
        if self.generation.n > 1:
            return self._evaluate_samples(worker, row, target)
        generation = worker.engine.result_for(self, worker.upcoming(self))
        score = _checked(self.scorer(generation.text, target, row), self.task.name)
        correct = passed = score.value >= self.task.pass_threshold
        comparison = None
        if self.reference is not None:
            comparison = self._compare(worker, row, generation, score, target)
            passed = comparison.binary_match is True
        record = records.evaluated(
            self.facts(),
            worker=worker.name,
            target=target,
            generation=generation,
            score=score,
            passed=passed,
            correct=correct,
            comparison=comparison,
        )
        return self._batching_facts(worker, record, row, target)

    def _evaluate_samples(self, worker: Worker, row: Mapping[str, Any], target: str) -> ItemRecord:
        """n candidates (run/samples.py): each scored, voted on; the verdict follows the
        majority (or `Task(pass_by=...)`)."""
        upcoming = [other for other in worker.upcoming(self) if isinstance(other, EvalItem)]
        outcomes = samples.generate_candidates(
            self,
            worker.engine.result_for,
            lambda text: _checked(self.scorer(text, target, row), self.task.name),
            upcoming,
        )
        describe = lambda exc: _error_message(exc, self.task.name)  # noqa: E731
        made = samples.sample_records(
            outcomes, samples.seeds_of(self), self.task.pass_threshold, describe
        )
        votes, followed, problem = samples.vote(made, self.task.select, self.task.pass_by)
        combined = samples.combined_generation(outcomes, followed)
        if combined is None:  # every candidate failed: the item's error is the first one's
            first = next(o for o in outcomes if isinstance(o, Exception))
            raise first
        if problem is not None:
            raise ItemError(f"task {self.task.name}: {problem}")
        generation, score = combined
        correct = samples.verdict(votes)
        record = records.evaluated(
            self.facts(),
            worker=worker.name,
            target=target,
            generation=generation,
            score=score,
            passed=correct,
            correct=correct,
        )
        return dataclasses.replace(record, samples=made, votes=votes)

    def _batching_facts(
        self, worker: Worker, record: ItemRecord, row: Mapping[str, Any], target: str
    ) -> ItemRecord:
        """The record with whether batch-invariant mode made its generation and, for an item
        in the `--llmeval-invariance-check` sample, the check: generated again alone (a
        batch of one, uncached) and scored; a cached batched text is compared all the same."""
        invariance = None
        if self.invariance_check:
            invariance = check_unbatched(
                lambda: worker.engine.generate_alone(self),
                lambda text: _checked(self.scorer(text, target, row), self.task.name),
                batched_text=record.response or "",
                batched_score=float(record.score or 0.0),
                pass_threshold=self.task.pass_threshold,
                describe=lambda exc: _error_message(exc, self.task.name),
            )
        invariant = worker.engine.batch_invariant_for(self.spec)
        return dataclasses.replace(record, batch_invariant=invariant, invariance=invariance)

    def _compare(
        self,
        worker: Worker,
        row: Mapping[str, Any],
        primary_generation: GenerationResult,
        primary: Score,
        target: str,
    ) -> Comparison:
        """Generate on the reference backend too; the item passes when the labels agree.

        A reference generation that fails is the reference's error, kept in the comparison
        (`reference_error`) beside the primary's intact result.
        """
        assert self.reference is not None
        others = (
            ReferenceRequest(item) for item in worker.upcoming(self) if item.reference is not None
        )
        text = _input_text(self.request().messages)
        try:
            generation = worker.engine.result_for(ReferenceRequest(self), others)
        except Exception as exc:
            labels = compare_item(primary_generation.text, None, primary.extracted, None)
            return records.compared(
                self.reference.name,
                None,
                None,
                text,
                labels,
                error=_error_message(exc, self.task.name),
            )
        score = _checked(self.scorer(generation.text, target, row), self.task.name)
        labels = compare_item(
            primary_generation.text,
            generation.text,
            primary.extracted,
            score.extracted,
            self.task.binary_of,
        )
        return records.compared(
            self.reference.name,
            generation,
            score,
            text,
            labels,
            pass_threshold=self.task.pass_threshold,
        )

    def runtest(self) -> None:
        """Fail with a one-line message when the answer was wrong (or the labels differ)."""
        record = self.record
        if record is not None and record.outcome == "fail":
            if record.comparison is not None:
                raise ItemMiss(disagreement_message(record))
            raise ItemMiss(miss_message(record))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """A miss or a known error is its one-line message."""
        # Returning it here, rather than replacing the report's longrepr afterwards, skips
        # building a traceback (source parsing included) for every wrong answer: that cost
        # ~0.17 s per miss.
        if isinstance(excinfo.value, ItemMiss | ItemError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        """Where pytest says the item lives: its module, no line, its item id."""
        return self.path, None, self.item_id


class ReferenceRequest:
    """An item's request as sent to the reference backend (its own engine key and model)."""

    def __init__(self, item: EvalItem) -> None:
        self.item = item
        assert item.reference is not None
        self.spec: ModelSpec = item.reference

    @property
    def nodeid(self) -> str:
        """The engine's key for this request (not a pytest node)."""
        return f"{self.item.nodeid}@reference"

    @property
    def model_spec(self) -> ModelSpec:
        """The reference model."""
        return self.spec

    def batch_key(self) -> Hashable:
        """Reference requests batch with each other, never with primary ones."""
        return (self.spec.name, self.item.task.name, self.item.task.generation)

    def request(self) -> GenerationRequest:
        """The same request as the item's."""
        return self.item.request()


class TaskProblemItem(pytest.Item):
    """Stands for a whole task that cannot run: skipped (data missing) or an error (bad task)."""

    def __init__(self, *, problem: str, skip: bool, task_info: TaskInfo, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem
        self.skip = skip
        self.task_info = task_info

    def setup(self) -> None:
        """Skip with the reason, or error with the problem."""
        if self.skip:
            pytest.skip(self.problem)
        raise ItemError(self.problem)

    def runtest(self) -> None:
        """Never reached: setup always skips or raises."""
        raise AssertionError("unreachable")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        """Its module, no line, the task's name."""
        return self.path, None, self.name


def _input_text(messages: list[dict[str, str]]) -> str:
    """The item's own input: the content of the last user message."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def disagreement_message(record: ItemRecord) -> str:
    """`labels differ: primary toxic, reference non-toxic (response similarity 0.42)`."""
    comparison = record.comparison
    assert comparison is not None
    return (
        f"labels differ: {record.model} {comparison.primary_label}, "
        f"{comparison.reference_model} {comparison.reference_label} "
        f"(response similarity {_similarity(comparison.response_indel_similarity)})"
    )


def _similarity(value: float | None) -> str:
    return "none: both empty" if value is None else f"{value:.2f}"


def miss_message(record: ItemRecord) -> str:
    """`expected 18, got 32 (flexible: "... = 32")`; sampled: `expected 18, got 32 (maj 3/5;
    candidates 32, 32, 18, 32, 7)`."""
    got = "nothing" if record.extracted is None else str(record.extracted)
    if record.samples and record.votes is not None:
        if record.votes.pass_by == "majority":
            got = "nothing" if record.votes.majority is None else record.votes.majority
        vote = samples.candidates_line(record.samples, record.votes)
        return f"expected {record.target}, got {got} ({vote})"
    span = record.span or str(record.response or "")[-60:]
    span = " ".join(span.split())
    return f'expected {record.target}, got {got} ({record.method}: "{span}")'


def _checked(score: Score, task: str) -> Score:
    """A scorer's result, refused unless it is a Score whose value is a number in [0, 1]."""
    if not isinstance(score, Score):
        got = "None" if score is None else f"{type(score).__name__} {score!r:.60}"
        hint = f" (wrap it: Score({score!r}, extracted, method))" if _bare_number(score) else ""
        raise ItemError(
            f"task {task}: scorer must return a Score(value, extracted, method), got {got}{hint}"
        )
    value = float(score.value)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ItemError(f"task {task}: scorer returned {score.value!r}; scores must be in [0, 1]")
    return score


def _bare_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _error_message(exc: BaseException, task: str) -> str:
    """One line: our own ItemError as is, a misconfigured target with the task's name (it is
    the same error on every item of the task), anything else with its type name in front."""
    if isinstance(exc, ItemError):
        return str(exc)
    if isinstance(exc, TargetError):
        return f"task {task}: {exc}"
    return f"{type(exc).__name__}: {exc}".strip()
