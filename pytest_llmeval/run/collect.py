"""Turning a `Task` found in a test module into items, identically on every worker and run.

Item ids are `<task>/<split>/<row index>` (plus `[arm]` when several arms run: a model, a
prompt variant, or both as `model-variant`), in row order per model and variant. A task
whose data is missing, or that runs on none of the run's models (`Task(models=...)`), becomes
one skipped item saying how to provide it (or which model it needs); a task that is broken
becomes one error item. Neither stops the rest of the session.

A Task object is collected once per session, in the first test module (in collection order)
that holds it: importing it into a second module does not run it twice. Two different Task
objects with the same name are an error item naming both modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from pytest_llmeval.analyze.gates import GateError, parse_gate
from pytest_llmeval.analyze.record import TaskInfo
from pytest_llmeval.declare.data import DataUnavailable, LoadedRows, RowError, load_rows
from pytest_llmeval.declare.describe import data_origin, declaration
from pytest_llmeval.declare.ids import arm_name, item_id, node_name
from pytest_llmeval.declare.models import ModelSpec, UnknownModel, resolve_model
from pytest_llmeval.declare.sampling import sample_indices
from pytest_llmeval.declare.settings import Settings
from pytest_llmeval.declare.task import Generation, ScoreFn, Task, TaskError
from pytest_llmeval.run.invariance import checked_rows
from pytest_llmeval.run.items import EvalItem, TaskProblemItem


class TaskClaims:
    """Which module collects each task: the first one holding it, once per session."""

    def __init__(self) -> None:
        self._owners: dict[str, tuple[Task, str]] = {}

    def claim(self, task: Task, module: str) -> bool:
        """Whether `module` collects `task` (False: another module already did).

        Raises TaskError when a different task already took the name.
        """
        name = str(task.name)
        owner = self._owners.get(name)
        if owner is None:
            self._owners[name] = (task, module)
            return True
        if owner[0] is task:
            return False
        raise TaskError(
            f"task name {name!r} is declared twice: in {owner[1]} and in {module}; "
            "give each Task its own name (or import the same Task object)"
        )


def claimed_items(
    collector: pytest.Collector,
    task: Task,
    claims: TaskClaims,
    settings: Settings,
    resolve_scorer: Callable[[Task], ScoreFn],
    hub: bool | None = None,
) -> list[pytest.Item]:
    """`task`'s items when this collector's module is the first to hold it, else none."""
    module = collector.nodeid.split("::", 1)[0]
    try:
        if not claims.claim(task, module):
            return []
    except TaskError as exc:
        return [_problem(collector, task, str(exc), skip=False)]
    return items_for_task(collector, task, settings, resolve_scorer, hub)


def items_for_task(
    collector: pytest.Collector,
    task: Task,
    settings: Settings,
    resolve_scorer: Callable[[Task], ScoreFn],
    hub: bool | None = None,
) -> list[pytest.Item]:
    """All items of `task` for every selected model (or one problem item).

    `resolve_scorer` turns the task's scorer (a function or a registered name) into a
    function; it raises TaskError for an unknown name. `hub` is the run's decision whether
    the Hub is reachable (None: ask here).
    """
    models = [] if task.problem else _models_of(task, settings)
    generation = settings.sampling.apply(task.generation)
    if not task.problem and not models:  # before its data is loaded: it will not run
        return [_problem(collector, task, _absent_models(task, settings), skip=True, absent=True)]
    try:
        if task.problem:
            raise TaskError(task.problem)
        _check_sampling(task, generation, settings)
        for gate in task.gates:
            parse_gate(gate, "task", task.name)
        scorer = resolve_scorer(task)
        loaded = load_rows(task.data, settings.data_dir, hub)
        _check_fields(task, loaded)
        reference = _reference(task, settings)
    except DataUnavailable as exc:
        return [_problem(collector, task, f"task {task.name}: {exc}", skip=True)]
    except (TaskError, GateError) as exc:
        return [_problem(collector, task, f"task {task.name}: {exc}", skip=False)]
    except UnknownModel as exc:
        return [_problem(collector, task, f"task {task.name}: reference: {exc}", skip=False)]
    except Exception as exc:  # a broken loader must not take the whole session down
        message = f"task {task.name}: loading data failed: {type(exc).__name__}: {exc}"
        return [_problem(collector, task, message, skip=False)]
    labels = _labels(task, loaded.rows)
    chosen = sample_indices(len(loaded.rows), settings.limit, settings.seed, labels)
    info = TaskInfo(
        name=task.name,
        origin=loaded.origin,
        split=loaded.split,
        rows=len(loaded.rows),
        gates=list(task.gates),
        data=data_origin(task.data, loaded, chosen),
        declaration=declaration(task, generation),
    )
    # The bracket names the arm whenever the run or the task has several (ids stay stable
    # when `models=` runs a task on one of them).
    several = len(settings.models) > 1
    variants = list(task.prompts())
    bracketed = several or variants != [None]
    checked = checked_rows(chosen, settings.invariance_check, generation.seed)
    items: list[pytest.Item] = []
    for spec, variant in ((spec, variant) for spec in models for variant in variants):
        arm = arm_name(spec.name, variant, several)
        for index in chosen:
            identity = item_id(task.name, loaded.split, index)
            name = node_name(identity, arm if bracketed else None)
            items.append(
                EvalItem.from_parent(
                    collector,
                    name=name,
                    # pytest >= 9 reads a saved id's `[...]` as parameters (`--lf`): an id
                    # built from the same text compares equal, one built from the name not.
                    nodeid=f"{collector.nodeid}::{name}",
                    arm=arm,
                    variant=variant,
                    task=task,
                    task_info=info,
                    scorer=scorer,
                    spec=spec,
                    row_index=index,
                    row=loaded.rows[index],
                    item_id=identity,
                    reference=reference,
                    invariance_check=index in checked and generation.n == 1,
                    generation=generation,
                )
            )
    return items


def _check_sampling(task: Task, generation: Generation, settings: Settings) -> None:
    """The task's generation after the command line's overrides can run; sampled tasks have
    no agreement reference (raises TaskError with the fix)."""
    if generation.problem:
        given = settings.sampling
        if given.samples is not None and generation.temperature == 0:
            raise TaskError(
                f"--llmeval-samples {given.samples} draws candidates, which needs sampling; "
                "this task decodes greedily: add --llmeval-temperature 0.7 (or set "
                "Generation(temperature=...))"
            )
        raise TaskError(generation.problem)
    if generation.n > 1 and (task.reference or settings.reference):
        raise TaskError(
            f"Generation.n={generation.n} (several candidates) cannot run in an agreement "
            "run (--compare-backend / Task(reference=...)): compare one generation per item"
        )


def _models_of(task: Task, settings: Settings) -> list[ModelSpec]:
    """The run's models this task runs on: all of them, or those its `models=` names."""
    if task.models is None:
        return list(settings.models)
    return [spec for spec in settings.models if spec.name in task.models]


def _absent_models(task: Task, settings: Settings) -> str:
    """Why a task with `models=` runs on none of this run's models, and the fix."""
    wanted = ", ".join(task.models or ())
    first = (task.models or ("ARM",))[0]
    return (
        f"task {task.name} runs only on model arm(s) {wanted}, not among this run's models "
        f"({', '.join(spec.name for spec in settings.models)}): add --model {first}=SPEC "
        "or change the task's models="
    )


def _reference(task: Task, settings: Settings) -> ModelSpec | None:
    """The reference backend for agreement runs: --compare-backend, else the task's own."""
    if settings.reference is not None:
        return settings.reference
    if task.reference:
        return resolve_model(task.reference, settings.aliases)
    return None


def _problem(
    collector: pytest.Collector, task: Task, message: str, skip: bool, absent: bool = False
) -> pytest.Item:
    """The one item of a task that cannot run; its TaskInfo tells the controller why, so
    the task's gates fail ("no data: ...") instead of going unchecked, or, for a task this
    run has none of the models of (`absent`), are reported as not evaluated."""
    name = task.name if isinstance(task.name, str) and task.name else "task"
    valid = not task.problem
    info = TaskInfo(
        name=name,
        origin=None,
        split=task.data.split if valid else None,
        rows=None,
        gates=_parseable(task.gates, name) if valid else [],
        declaration=declaration(task) if valid else None,
        no_data=message,
        data_missing=skip and not absent,
        models_absent=absent,
    )
    item: pytest.Item = TaskProblemItem.from_parent(
        collector, name=name, problem=message, skip=skip, task_info=info
    )
    return item


def _parseable(gates: Sequence[str], task: str) -> list[str]:
    """The gates that parse (a task with a malformed gate is an error item already)."""
    kept = []
    for gate in gates:
        try:
            parse_gate(gate, "task", task)
        except GateError:
            continue
        kept.append(gate)
    return kept


def _check_fields(task: Task, loaded: LoadedRows) -> None:
    """Fail early, before any model work, when the task names a field the data lacks."""
    first = next((row for row in loaded.rows if isinstance(row, Mapping)), None)
    if first is None:
        return
    missing = sorted(task.required_fields() - set(first))
    if missing:
        raise TaskError(
            f"field(s) {', '.join(map(repr, missing))} not in the data ({loaded.origin}); "
            f"available fields: {', '.join(sorted(first))}"
        )


def _labels(task: Task, rows: Sequence[Mapping[str, Any] | RowError]) -> list[Any] | None:
    if not task.label_field:
        return None
    return [None if isinstance(row, RowError) else row.get(task.label_field) for row in rows]
