"""Metrics over a task's records that are not plain means: score components, task-level
metrics (per-label recall, precision, F1, macro-F1), the built-in label metrics and confusion
matrix of a classification task, and weighted composites.

Every interval here is a 95% percentile bootstrap over ITEMS: 2,000 resamples from
`random.Random(0)`, one shared set of resamples for every figure of the task x arm, so a
composite's interval recomputes all its parts on the same resampled items and the same
records always give the same intervals. A resample in which a figure is undefined (no item of
the label drawn) is skipped for that figure. Stdlib only, like `sampling`.

Label figures compare each record's target with its extracted answer: with the task's label
set both are read as one of its labels (any spelling), otherwise compared case-insensitively.
An errored item whose target is known is predicted `[error]` (a miss for recall, in the
confusion matrix as its own column); an item whose target is unknown (it failed before its
row was read) is left out of every label figure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.analyze.composite import ITEM_MEANS, CompositeError, parse_composite
from pytest_llmeval.analyze.metrics import LabelScores
from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.analyze.stats import percentile, shared_bootstrap
from pytest_llmeval.score.extraction import TargetError
from pytest_llmeval.score.labels import INVALID, LabelSet

ERROR = "[error]"
"""The predicted label of an item that errored (a confusion-matrix column of its own)."""
RESAMPLES = 2000
SEED = 0
Estimate = Callable[[Sequence[int]], float | None]


@dataclass(frozen=True)
class _Item:
    """What every figure needs of one record; records with equal facts share a weight."""

    correct: bool
    score: float
    parsed: bool
    errored: bool
    truth: str | None
    predicted: str
    parts: tuple[float | None, ...]


def label_slug(label: str) -> str:
    """A label as part of a gate name: `non-toxic` -> `non_toxic` (gate `f1_non_toxic`)."""
    return re.sub(r"\W+", "_", label.strip()).strip("_").lower() or "_"


class _Reader:
    """Reads targets and answers as labels: the task's label set, else case-folded text."""

    def __init__(self, labels: Sequence[str] | None) -> None:
        self.labels = LabelSet(labels) if labels else None

    def read(self, text: str | None) -> str | None:
        if text is None:
            return None
        if self.labels is not None:
            try:
                return self.labels.target(str(text))
            except TargetError:
                pass
        return " ".join(str(text).split()).casefold()


def task_figures(
    records: Sequence[ItemRecord],
    labels: Sequence[str] | None = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    composites: Mapping[str, str] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """The `Metrics` fields of this module for one task x arm (an empty dict when there is
    nothing to report): `components*` when the scorer returned components, `task_metrics*` for
    the declared `metrics`, `label_metrics`/`macro_f1`/`confusion` when the task has `labels`,
    `composites*` for the declared `composites`."""
    names = list(dict.fromkeys(name for r in records for name in r.components or {}))
    if not records or not (names or labels or metrics or composites):
        return {}
    reader = _Reader(labels)
    # An errored record without its own components (a scorer that cannot say which apply to
    # its row, a row never read): a component some scored item marks N/A may not apply to it,
    # so it is left out; one that applies to every scored item counts it 0 (as accuracy).
    everywhere = {
        name
        for name in names
        if all((r.components or {}).get(name) is not None for r in records if r.score is not None)
    }
    items = [_item(r, names, everywhere, reader) for r in records]
    keys = list(dict.fromkeys(items))
    index = {key: i for i, key in enumerate(keys)}
    key_of = [index[item] for item in items]
    figures: dict[str, Estimate] = {}
    counts: dict[str, int] = {}
    ones = Counter(key_of)
    once = [ones[i] for i in range(len(keys))]
    for mean in ITEM_MEANS:
        figures[mean] = _item_mean(keys, mean)
    for pos, name in enumerate(names):
        figures[name] = _part_mean(keys, pos)
        counts[name] = sum(1 for item in items if item.parts[pos] is not None)
    label_list = list(reader.labels.labels) if reader.labels else []
    for label in label_list:
        for kind in ("precision", "recall", "f1"):
            figures[f"{kind}_{label_slug(label)}"] = _label_figure(keys, kind, label)
    if label_list:
        figures["macro_f1"] = _macro(keys, label_list)
    declared: dict[str, dict[str, Any]] = {}
    # A declared name that is already one of the task's figures (a saved run's declaration, a
    # scorer that does not list its components) never replaces it: the component or label
    # metric keeps the name, the declaration gets None and a reason (declaration refuses it).
    clashes: dict[str, str] = {}  # declared metric -> why it has no value
    for name, spec in (metrics or {}).items():
        if name in figures:
            clashes[name] = _clash("metric", name, names)
            declared[name] = dict(spec)
            continue
        wanted_label = reader.read(spec.get("label"))
        if spec["kind"] == "macro_f1":
            truths = label_list or sorted({k.truth for k in keys if k.truth is not None})
            figures[name] = _macro(keys, truths)
        else:
            assert wanted_label is not None
            figures[name] = _label_figure(keys, spec["kind"], wanted_label)
        declared[name] = dict(spec)
        counts[name] = _count(items, spec["kind"], wanted_label)
    parts: dict[str, list[tuple[float, str]]] = {}
    reasons: dict[str, str] = {}
    for name, expression in (composites or {}).items():
        if name in figures or name in declared:
            reasons[name] = _clash("composite", name, names, declared)
            continue
        try:
            terms = parse_composite(expression)
        except CompositeError as exc:
            reasons[name] = str(exc)
            continue
        unknown = [part for _, part in terms if part not in figures]
        if unknown:
            known = ", ".join(n for n in figures if n not in ITEM_MEANS or n == "accuracy")
            reasons[name] = (
                f"{', '.join(map(repr, unknown))} is no metric of this task; known: {known}"
            )
            continue
        parts[name] = terms
        figures[name] = _weighted(terms, figures)
    point = {name: estimate(once) for name, estimate in figures.items()}
    for name, terms in parts.items():
        if point[name] is None:
            undefined = [part for _, part in terms if point[part] is None]
            reasons[name] = (
                f"undefined: {', '.join(undefined)} has no value (no item it applies to)"
            )
    wanted = [name for name in figures if name not in ITEM_MEANS]
    ci = _bootstrap(
        {name: figures[name] for name in wanted if point[name] is not None},
        key_of, len(keys), resamples, seed,
    )  # fmt: skip
    out: dict[str, Any] = {}
    if names:
        out["components"] = {name: point[name] for name in names}
        out["components_ci95"] = {name: ci.get(name) for name in names}
        out["components_n"] = {name: counts[name] for name in names}
    # A clashing name's figure is the component's (or label metric's), not the declaration's.
    if declared:
        out["task_metrics"] = {name: None if name in clashes else point[name] for name in declared}
        out["task_metrics_ci95"] = {
            name: None if name in clashes else ci.get(name) for name in declared
        }
        out["task_metrics_n"] = {name: 0 if name in clashes else counts[name] for name in declared}
        if any(name in clashes for name in declared):
            out["task_metrics_reason"] = {n: clashes[n] for n in declared if n in clashes}
    if composites:
        out["composites"] = {name: point[name] if name in parts else None for name in composites}
        out["composites_ci95"] = {
            name: ci.get(name) if name in parts else None for name in composites
        }
        out["composites_reason"] = {name: reasons[name] for name in composites if name in reasons}
    if label_list:
        out["label_metrics"] = {
            label: _label_scores(label, items, point, ci) for label in label_list
        }
        out["macro_f1"] = point["macro_f1"]
        out["macro_f1_ci95"] = ci.get("macro_f1")
        out["confusion"] = _confusion(items, label_list)
    return out


def _clash(kind: str, name: str, components: Sequence[str], metrics: Collection[str] = ()) -> str:
    """Why a declared metric or composite named like one of the task's figures has no value."""
    if name in components:
        taken = f"score component {name!r}"
    elif name in ITEM_MEANS:
        taken = f"built-in metric {name!r}"
    elif name in metrics:
        taken = f"task metric {name!r}"
    else:
        taken = f"label metric {name!r}"
    return (
        f"{kind} {name!r} has the name of the {taken}, which keeps that name (gates and "
        f"composites naming it read the {taken.rsplit(' ', 1)[0]}); rename the {kind}"
    )


def _item(record: ItemRecord, names: list[str], everywhere: set[str], reader: _Reader) -> _Item:
    errored = record.score is None
    found = record.components or {}
    # An errored item whose row was read carries its own components (0.0 where they apply
    # to its row, None elsewhere: run/records.py `error_components`); else the rule above.
    parts = tuple(
        (0.0 if name in everywhere else None)
        if errored and name not in found
        else _float(found.get(name))
        for name in names
    )
    extracted = reader.read(record.extracted) if record.extracted not in (None, INVALID) else None
    return _Item(
        correct=not errored and bool(record.correct),
        score=0.0 if errored else float(record.score or 0.0),
        parsed=not errored and extracted is not None,
        errored=errored,
        truth=reader.read(record.target),
        predicted=ERROR if errored else extracted or INVALID,
        parts=parts,
    )


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _item_mean(keys: list[_Item], mean: str) -> Estimate:
    get: Callable[[_Item], float] = {
        "accuracy": lambda k: float(k.correct),
        "mean_score": lambda k: k.score,
        "parse_rate": lambda k: float(k.parsed),
        "error_rate": lambda k: float(k.errored),
    }[mean]
    values = [get(k) for k in keys]

    def estimate(weights: Sequence[int]) -> float | None:
        total = sum(weights)
        return sum(w * v for w, v in zip(weights, values, strict=True)) / total if total else None

    return estimate


def _part_mean(keys: list[_Item], pos: int) -> Estimate:
    values = [k.parts[pos] for k in keys]

    def estimate(weights: Sequence[int]) -> float | None:
        pairs = [(w, v) for w, v in zip(weights, values, strict=True) if v is not None and w]
        total = sum(w for w, _ in pairs)
        return sum(w * v for w, v in pairs) / total if total else None

    return estimate


def _tallies(keys: list[_Item], label: str) -> Callable[[Sequence[int]], tuple[int, int, int]]:
    """(true positives, items whose truth is `label`, items predicted `label`), target known."""
    flags = [(k.truth == label, k.predicted == label) for k in keys]
    known = [k.truth is not None for k in keys]

    def tally(weights: Sequence[int]) -> tuple[int, int, int]:
        tp = support = predicted = 0
        for w, (is_true, is_pred), ok in zip(weights, flags, known, strict=True):
            if w and ok:
                tp += w * (is_true and is_pred)
                support += w * is_true
                predicted += w * is_pred
        return tp, support, predicted

    return tally


def _label_figure(keys: list[_Item], kind: str, label: str) -> Estimate:
    tally = _tallies(keys, label)

    def estimate(weights: Sequence[int]) -> float | None:
        tp, support, predicted = tally(weights)
        return _ratio(kind, tp, support, predicted)

    return estimate


def _ratio(kind: str, tp: int, support: int, predicted: int) -> float | None:
    """Recall tp/support, precision tp/predicted, F1 2tp/(support + predicted); None over 0."""
    denominator = {"recall": support, "precision": predicted, "f1": support + predicted}[kind]
    return (2 * tp if kind == "f1" else tp) / denominator if denominator else None


def _macro(keys: list[_Item], labels: Sequence[str]) -> Estimate:
    """Mean F1 over the labels with an F1 (present in the targets or the predictions)."""
    per_label = [_label_figure(keys, "f1", label) for label in labels]

    def estimate(weights: Sequence[int]) -> float | None:
        found = [f for f in (one(weights) for one in per_label) if f is not None]
        return sum(found) / len(found) if found else None

    return estimate


def _weighted(terms: list[tuple[float, str]], figures: Mapping[str, Estimate]) -> Estimate:
    def estimate(weights: Sequence[int]) -> float | None:
        values = [figures[part](weights) for _, part in terms]
        if any(v is None for v in values):
            return None
        return sum(w * v for (w, _), v in zip(terms, values, strict=True) if v is not None)

    return estimate


def _count(items: list[_Item], kind: str, label: str | None) -> int:
    """The n a declared metric is computed over (its denominator's items)."""
    known = [i for i in items if i.truth is not None]
    if kind == "recall":
        return sum(1 for i in known if i.truth == label)
    if kind == "precision":
        return sum(1 for i in known if i.predicted == label)
    if kind == "f1":
        return sum(1 for i in known if label in (i.truth, i.predicted))
    return len(known)


def _bootstrap(
    figures: Mapping[str, Estimate], key_of: list[int], keys: int, resamples: int, seed: int
) -> dict[str, list[float] | None]:
    """Percentile 95% intervals from one shared set of item resamples."""
    if not figures:
        return {}
    found = shared_bootstrap(
        lambda weights: {name: estimate(weights) for name, estimate in figures.items()},
        key_of, keys, resamples, seed,
    )  # fmt: skip
    out: dict[str, list[float] | None] = {}
    for name, values in found.items():
        low, high = percentile(values, 2.5), percentile(values, 97.5)
        out[name] = None if low is None or high is None else [low, high]
    return out


def _label_scores(
    label: str,
    items: list[_Item],
    point: Mapping[str, float | None],
    ci: Mapping[str, list[float] | None],
) -> LabelScores:
    slug = label_slug(label)
    return LabelScores(
        precision=point[f"precision_{slug}"],
        precision_ci95=ci.get(f"precision_{slug}"),
        recall=point[f"recall_{slug}"],
        recall_ci95=ci.get(f"recall_{slug}"),
        f1=point[f"f1_{slug}"],
        f1_ci95=ci.get(f"f1_{slug}"),
        support=_count(items, "recall", label),
        predicted=_count(items, "precision", label),
    )


def _confusion(items: list[_Item], labels: list[str]) -> dict[str, dict[str, int]]:
    """True label -> predicted label -> items (columns: the labels, `[invalid]`, `[error]`)."""
    rows = list(labels) + sorted({i.truth for i in items if i.truth and i.truth not in labels})
    table = {row: dict.fromkeys([*labels, INVALID, ERROR], 0) for row in rows}
    for item in items:
        if item.truth is not None:
            column = item.predicted if item.predicted in table[item.truth] else INVALID
            table[item.truth][column] += 1
    return table
