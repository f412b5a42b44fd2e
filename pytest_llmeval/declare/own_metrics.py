"""A task's own metrics checked at declaration: `Task(metrics=...)` built by
`pytest_llmeval.metrics`, `Task(composites=...)` weighted sums that parse, and, where every
name the task can have is known, gates that name one of them.

What a scorer returns is known only when it says so: the built-in numeric, exact and label
scorers return no components, a scorer may list its own (`scorer.components = [...]`), and
for any other scorer the names of components are left to the run (a gate or composite naming
one the records lack fails there, with the names the task has).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmeval.analyze.composite import CompositeError, check_composites, check_metric
from pytest_llmeval.analyze.gates import METRICS, GateError, parse_gate
from pytest_llmeval.analyze.sampling_gates import is_sampled_metric
from pytest_llmeval.analyze.task_metrics import label_slug
from pytest_llmeval.score.scorers import BUILTIN_SCORERS


def checked_metrics(
    scorer: object,
    metrics: Mapping[str, Any],
    composites: Mapping[str, Any],
    gates: Sequence[str],
    task: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The task's metrics and composites as plain JSON; raises CompositeError naming the bad
    metric, composite or gate and the names the task has."""
    found = {name: check_metric(name, spec) for name, spec in metrics.items()}
    plain = dict(composites)
    components = components_of(scorer)
    check_composites(plain, found, components)
    labels = getattr(scorer, "labels", None) or []
    taken = _taken(components or [], labels)
    for kind, names in (("metric", found), ("composite", plain)):
        for name in names:
            if name in taken:
                raise CompositeError(
                    f"{kind} {name!r} has the name of the {taken[name]}; it would replace that "
                    f"figure in the report, its gates and composites: rename the {kind}"
                )
    if components is not None:
        own = [*found, *plain, *components]
        own += [f"{kind}_{label_slug(str(label))}" for label in labels
                for kind in ("precision", "recall", "f1")]  # fmt: skip
        own += ["macro_f1"] if labels else []
        _check_gates(gates, own, task)
    return found, plain


def _taken(components: Sequence[str], labels: Sequence[object]) -> dict[str, str]:
    """Names a task metric or composite may not take -> what has it: the built-in gateable
    metrics and `macro_f1` always, the scorer's components and per-label metrics when known."""
    taken = {name: f"built-in metric {name!r}" for name in [*METRICS, "macro_f1"]}
    for label in labels:
        for kind in ("precision", "recall", "f1"):
            name = f"{kind}_{label_slug(str(label))}"
            taken[name] = f"label metric {name!r} (label {str(label)!r})"
    taken.update({name: f"scorer's component {name!r}" for name in components})
    return taken


def components_of(scorer: object) -> list[str] | None:
    """The components a scorer returns: the list it declares (`scorer.components`), none for
    the built-in numeric, exact and label scorers, None (unknown) for any other."""
    listed = getattr(scorer, "components", None)
    if isinstance(listed, list | tuple):
        return [str(c) for c in listed]
    named = isinstance(scorer, str) and scorer in BUILTIN_SCORERS
    if named or any(scorer is builtin for builtin in BUILTIN_SCORERS.values()):
        return []
    if getattr(scorer, "__qualname__", "") == "label.<locals>.score_label":
        return []
    return None


def _check_gates(gates: Sequence[str], own: list[str], task: str) -> None:
    """A gate naming none of the built-in metrics and none of `own` (a malformed gate is left
    to collection, which reports it as the task's problem)."""
    for text in gates:
        try:
            metric = parse_gate(text, "task", task).metric
        except GateError:
            continue
        if metric in METRICS or metric in own or is_sampled_metric(metric):
            continue
        close = difflib.get_close_matches(metric, [*METRICS, *own], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CompositeError(
            f"gate {text!r} names {metric!r}{hint}, which this task does not have; its own "
            f"metrics: {', '.join(own) or 'none'}; built-in: accuracy, mean_score, parse_rate, ..."
        )
