"""Score components, task-level metrics, label metrics and composites, against hand-computed
values (analyze/task_metrics.py, analyze/composite.py, analyze/task_gates.py)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from pytest_llmeval import Task, metrics, scoring
from pytest_llmeval.analyze.aggregate import summarize_run
from pytest_llmeval.analyze.composite import CompositeError, parse_composite
from pytest_llmeval.analyze.gates import check_gate, parse_gate
from pytest_llmeval.analyze.record import ItemRecord, TaskInfo
from pytest_llmeval.analyze.task_metrics import label_slug, task_figures
from pytest_llmeval.declare.describe import declaration
from pytest_llmeval.declare.task import DataSource
from pytest_llmeval.run import records

LABELS = ["toxic", "non-toxic"]


def record(i: int, target: str | None, extracted: str | None, **fields: Any) -> ItemRecord:
    errored = fields.pop("errored", False)
    return ItemRecord(
        id=f"t/test/{i}", nodeid=f"evals/t.py::t/test/{i}[m]", task="t", model="m",
        split="test", row_index=i, source="task", outcome="error" if errored else "pass",
        target=target, extracted=None if errored else extracted,
        score=None if errored else float(target == extracted),
        correct=None if errored else target == extracted, **fields,
    )  # fmt: skip


# 7 items: (target, answer). toxic: 4 targets (rows 0,1,2,6), 3 answers (0,1,3), 2 hits;
# non-toxic: 3 targets (3,4,5), 2 answers (2,4), 1 hit; row 5 unparsed, row 6 errored.
LABELLED = [
    record(0, "toxic", "toxic"),
    record(1, "toxic", "toxic"),
    record(2, "toxic", "non-toxic"),
    record(3, "Non toxic", "toxic"),  # any spelling of a label is that label
    record(4, "non-toxic", "non-toxic"),
    record(5, "non-toxic", "[invalid]"),
    record(6, "toxic", None, errored=True),
]


def test_label_metrics_hand_computed() -> None:
    found = task_figures(LABELLED, LABELS)
    toxic, non_toxic = found["label_metrics"]["toxic"], found["label_metrics"]["non-toxic"]
    # toxic: P = 2/3, R = 2/4, F1 = 2*2 / (4 + 3) = 4/7 (= 2PR/(P+R) = (2/3)/(7/6)).
    assert (toxic.precision, toxic.recall, toxic.f1) == pytest.approx((2 / 3, 0.5, 4 / 7))
    assert (toxic.support, toxic.predicted) == (4, 3)
    # non-toxic: P = 1/2, R = 1/3, F1 = 2*1 / (3 + 2) = 0.4.
    assert (non_toxic.precision, non_toxic.recall, non_toxic.f1) == pytest.approx((0.5, 1 / 3, 0.4))
    assert (non_toxic.support, non_toxic.predicted) == (3, 2)
    assert found["macro_f1"] == pytest.approx((4 / 7 + 0.4) / 2)  # 0.485714...
    assert found["confusion"] == {
        "toxic": {"toxic": 2, "non-toxic": 1, "[invalid]": 0, "[error]": 1},
        "non-toxic": {"toxic": 1, "non-toxic": 1, "[invalid]": 1, "[error]": 0},
    }
    low, high = found["macro_f1_ci95"]
    assert 0.0 <= low <= found["macro_f1"] <= high <= 1.0


def test_label_never_predicted_has_f1_zero_and_no_precision() -> None:
    always_toxic = [record(i, t, "toxic") for i, t in enumerate(["toxic", "non-toxic"] * 2)]
    found = task_figures(always_toxic, LABELS)["label_metrics"]["non-toxic"]
    assert found.precision is None  # nothing answered non-toxic: undefined, not 0
    assert (found.recall, found.f1) == (0.0, 0.0)


def qa(i: int, value: float, na: float | None, target: str, answer: str) -> ItemRecord:
    return record(i, target, answer, components={"value": value, "na": na})


# Rows 3 and 4 are unanswerable (target is_blank); row 5 is unanswerable and errored.
QA = [
    qa(0, 1.0, None, "42", "42"),
    qa(1, 0.0, None, "7", "8"),
    qa(2, 1.0, None, "3", "3"),
    qa(3, 1.0, 1.0, "is_blank", "is_blank"),
    qa(4, 1.0, 1.0, "is_blank", "is_blank"),
    record(5, "is_blank", None, errored=True),
]


def test_components_task_metrics_and_composite_hand_computed() -> None:
    found = task_figures(
        QA,
        metrics={"blank_recall": metrics.recall("is_blank")},
        composites={
            "wattbot": "0.75*value + 0.25*na",
            "mixed": "0.5*accuracy + 0.5*blank_recall",
        },
    )
    # value applies to every scored item, so the errored one counts 0: (1+0+1+1+1+0)/6.
    # na: some scored items are N/A, so the errored one is left out: (1+1)/2.
    assert found["components"] == pytest.approx({"value": 4 / 6, "na": 1.0})
    assert found["components_n"] == {"value": 6, "na": 2}
    # The task metric reads the target: the errored unanswerable row is a miss, 2/3.
    assert found["task_metrics"] == pytest.approx({"blank_recall": 2 / 3})
    assert found["task_metrics_n"] == {"blank_recall": 3}
    # 0.75 * 4/6 + 0.25 * 1 = 0.75; accuracy 4/6 (rows 0, 2, 3, 4): 0.5*4/6 + 0.5*2/3.
    assert found["composites"] == pytest.approx({"wattbot": 0.75, "mixed": 2 / 3})
    assert found["composites_reason"] == {}
    for name in ("wattbot", "mixed"):
        low, high = found["composites_ci95"][name]
        assert low <= found["composites"][name] <= high


def test_na_recall_without_na_items_is_undefined_and_so_is_its_composite() -> None:
    answerable = QA[:3]
    found = task_figures(
        answerable,
        metrics={"blank_recall": metrics.recall("is_blank")},
        composites={"wattbot": "0.75*value + 0.25*na"},
    )
    assert found["components"]["na"] is None  # undefined: not 0, not 1
    assert found["components_n"]["na"] == 0
    assert found["components_ci95"]["na"] is None
    assert found["task_metrics"]["blank_recall"] is None
    assert found["composites"]["wattbot"] is None
    assert "na" in found["composites_reason"]["wattbot"]
    assert "undefined" in found["composites_reason"]["wattbot"]


def test_composite_naming_an_unknown_part_has_a_reason() -> None:
    found = task_figures(QA, composites={"w": "0.5*value + 0.5*vlaue_acc"})
    assert found["composites"]["w"] is None
    assert "'vlaue_acc'" in found["composites_reason"]["w"]
    assert "value" in found["composites_reason"]["w"]  # lists the known names


def _numpy_percentile_interval(values: list[float]) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def test_bootstrap_is_seeded_and_matches_an_independent_resampling() -> None:
    rows = [record(i, ["toxic", "non-toxic"][i % 2], ["toxic", "non-toxic"][(i // 3) % 2])
            for i in range(30)]  # fmt: skip
    spec = {"tox_recall": metrics.recall("toxic")}
    first = task_figures(rows, LABELS, metrics=spec)
    again = task_figures(rows, LABELS, metrics=spec)
    assert first["task_metrics_ci95"] == again["task_metrics_ci95"]
    # Independent: the same draws (random.Random(0), 2000 x choices of n rows), the recall
    # computed from the resampled rows directly, numpy's percentiles.
    draw = random.Random(0)
    recalls, macros = [], []
    for _ in range(2000):
        sample = [rows[i] for i in draw.choices(range(len(rows)), k=len(rows))]
        toxic = [r for r in sample if r.target == "toxic"]
        if toxic:
            recalls.append(sum(r.extracted == "toxic" for r in toxic) / len(toxic))
        f1s = []
        for label in LABELS:
            hits = sum(r.target == label == r.extracted for r in sample)
            total = sum(r.target == label for r in sample) + sum(
                r.extracted == label for r in sample
            )
            if total:
                f1s.append(2 * hits / total)
        macros.append(sum(f1s) / len(f1s))
    assert first["task_metrics_ci95"]["tox_recall"] == pytest.approx(
        _numpy_percentile_interval(recalls)
    )
    assert first["macro_f1_ci95"] == pytest.approx(_numpy_percentile_interval(macros))


def test_parse_composite() -> None:
    assert parse_composite("0.75*value_accuracy + 0.15*ref_overlap + 0.10*na_recall") == [
        (0.75, "value_accuracy"), (0.15, "ref_overlap"), (0.10, "na_recall"),
    ]  # fmt: skip
    assert parse_composite("a - b*2 + 1e-1*c") == [(1.0, "a"), (-2.0, "b"), (0.1, "c")]
    for bad in ("", "0.5*", "a b", "a + a", "__import__('os')", "0.5*a +", "a * b"):
        with pytest.raises(CompositeError, match="composite"):
            parse_composite(bad)


def _task(**fields: Any) -> Task:
    given: dict[str, Any] = {"scorer": "exact", **fields}
    return Task(
        name="qa", data=DataSource(files="qa.jsonl"), prompt=lambda row: [], target="answer",
        **given,
    )  # fmt: skip


def test_declaration_keeps_metrics_and_composites_as_plain_data() -> None:
    task = _task(metrics={"blank_recall": metrics.recall("is_blank"), "m": metrics.macro_f1()},
                 composites={"wattbot": "0.9*accuracy + 0.1*blank_recall"})  # fmt: skip
    assert task.problem is None
    declared = declaration(task)
    assert declared.metrics == {
        "blank_recall": {"kind": "recall", "label": "is_blank"},
        "m": {"kind": "macro_f1", "label": None},
    }
    assert declared.composites == {"wattbot": "0.9*accuracy + 0.1*blank_recall"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"composites": {"w": "0.5*accuracy +"}}, "cannot parse composite '0.5*accuracy +'"),
        ({"metrics": {"r": {"kind": "recal"}}}, "metric 'r' must be built by"),
        ({"metrics": {"accuracy": metrics.recall("x")}}, "'accuracy' is a built-in"),
        ({"metrics": {"r": metrics.recall("")}}, "needs a non-empty label"),
        ({"composites": {"w w": "accuracy"}}, "composite name 'w w'"),
    ],
)
def test_bad_declarations_are_the_task_problem(fields: dict[str, Any], message: str) -> None:
    problem = _task(**fields).problem
    assert problem is not None and message in problem
    assert "\n" not in problem


def test_composite_names_checked_against_a_scorer_that_lists_its_components() -> None:
    def scorer(response: str, target: str, row: Any) -> Any:
        raise AssertionError("not called")

    scorer.components = ["value_accuracy", "ref_overlap"]  # type: ignore[attr-defined]
    problem = _task(scorer=scorer, composites={"w": "0.5*value_accuracy + 0.5*ref_overlp"}).problem
    assert problem is not None
    assert "'ref_overlp'" in problem and "ref_overlap" in problem  # the known names


def test_label_slug() -> None:
    assert label_slug("non-toxic") == "non_toxic"
    assert label_slug("Not Sure") == "not_sure"


def test_gates_resolve_task_names_at_check_time() -> None:
    info = TaskInfo(name="t", origin=None, split="test", rows=6, declaration=declaration(
        _task(metrics={"blank_recall": metrics.recall("is_blank")},
              composites={"wattbot": "0.75*value + 0.25*na"})))  # fmt: skip
    summary = summarize_run(QA, {"t": info})[("t", "m")]

    def check(text: str) -> Any:
        return check_gate(parse_gate(text, "cli"), "t", "m", summary)

    wattbot = check("wattbot>=0.7")
    assert (wattbot.passed, wattbot.value) == (True, pytest.approx(0.75))
    assert wattbot.interval is not None
    assert check("wattbot>=0.8").passed is False
    recall = check("blank_recall>=0.7")
    assert (recall.passed, recall.value, recall.n) == (False, pytest.approx(2 / 3), 3)
    assert check("na>=1").passed is True and check("na>=1").n == 2
    misspelt = check("watbot>=0.1")
    assert misspelt.passed is False and misspelt.value is None
    assert "unknown metric 'watbot'" in str(misspelt.reason)
    assert "did you mean 'wattbot'" in str(misspelt.reason)
    assert "value, na, blank_recall, wattbot" in str(misspelt.reason)
    typo = check("acuracy>=0.1")
    assert typo.passed is False and "did you mean 'accuracy'" in str(typo.reason)


def test_task_gate_naming_nothing_the_task_has_is_its_problem() -> None:
    problem = _task(scorer=scoring.numeric, gates=["acuracy >= 0.5"]).problem
    assert problem is not None
    assert "gate 'acuracy >= 0.5' names 'acuracy' (did you mean 'accuracy'?)" in problem
    labelled = scoring.label(LABELS)
    assert _task(scorer=labelled, gates=["f1_non_toxic>=0.5", "macro_f1>=0.5"]).problem is None
    problem = _task(scorer=labelled, gates=["f1_nontoxic>=0.5"]).problem
    assert problem is not None and "did you mean 'f1_non_toxic'" in problem
    # A scorer that does not list its components: its names are checked after the run.
    assert _task(scorer=lambda r, t, row: None, gates=["value_accuracy>=0.5"]).problem is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # The QA scorer lists its components: a task metric or composite may not take one's name.
        ({"scorer": scoring.qa(), "metrics": {"na_recall": metrics.recall("is_blank")}},
         "metric 'na_recall' has the name of the scorer's component 'na_recall'"),
        ({"scorer": scoring.qa(), "composites": {"ref_overlap": "0.5*value_accuracy"}},
         "composite 'ref_overlap' has the name of the scorer's component 'ref_overlap'"),
        # A label scorer's per-label metrics and macro-F1 are the task's names too.
        ({"scorer": scoring.label(LABELS), "composites": {"f1_toxic": "0.5*accuracy"}},
         "composite 'f1_toxic' has the name of the label metric 'f1_toxic' (label 'toxic')"),
        ({"scorer": scoring.label(LABELS), "metrics": {"recall_non_toxic": metrics.f1("toxic")}},
         "metric 'recall_non_toxic' has the name of the label metric 'recall_non_toxic'"),
        ({"metrics": {"macro_f1": metrics.macro_f1()}},
         "metric 'macro_f1' has the name of the built-in metric 'macro_f1'"),
        ({"composites": {"agreement": "1*accuracy"}},
         "composite 'agreement' has the name of the built-in metric 'agreement'"),
    ],
)  # fmt: skip
def test_metric_or_composite_taking_a_name_the_task_has_is_refused(
    fields: dict[str, Any], message: str
) -> None:
    problem = _task(**fields).problem
    assert problem is not None and message in problem, problem
    assert "\n" not in problem


def test_saved_declaration_clashing_with_a_component_never_replaces_it() -> None:
    # A saved run's declaration (or a scorer that does not list its components) names a task
    # metric `na` and a composite `value` that are also the records' components.
    found = task_figures(
        QA,
        metrics={"na": metrics.recall("is_blank")},
        composites={"value": "1*accuracy", "w": "0.75*value + 0.25*na"},
    )
    # The components keep their own means: value (1+0+1+1+1+0)/6, na (1+1)/2, not the recall
    # 2/3 nor the accuracy 4/6 declared under their names.
    assert found["components"] == pytest.approx({"value": 4 / 6, "na": 1.0})
    assert found["task_metrics"] == {"na": None}
    assert "score component 'na'" in found["task_metrics_reason"]["na"]
    assert found["composites"]["value"] is None
    assert "score component 'value'" in found["composites_reason"]["value"]
    # A composite naming them reads the components: 0.75 * 4/6 + 0.25 * 1.
    assert found["composites"]["w"] == pytest.approx(0.75)
    info = TaskInfo(name="t", origin=None, split="test", rows=6, declaration=declaration(
        _task(scorer=lambda r, t, row: None, metrics={"na": metrics.recall("is_blank")})))  # fmt: skip
    summary = summarize_run(QA, {"t": info})[("t", "m")]
    gate = check_gate(parse_gate("na>=1", "cli"), "t", "m", summary)
    assert (gate.passed, gate.value, gate.n) == (True, 1.0, 2)  # the component, n = 2


def test_saved_composite_named_like_a_label_metric_never_replaces_it() -> None:
    found = task_figures(LABELLED, LABELS, composites={"f1_toxic": "1*accuracy"})
    assert found["label_metrics"]["toxic"].f1 == pytest.approx(4 / 7)
    assert found["composites"]["f1_toxic"] is None
    assert "label metric 'f1_toxic'" in found["composites_reason"]["f1_toxic"]


def test_saved_composite_named_like_a_task_metric_never_replaces_it() -> None:
    found = task_figures(
        QA,
        metrics={"blank_recall": metrics.recall("is_blank")},
        composites={"blank_recall": "1*accuracy"},
    )
    assert found["task_metrics"] == pytest.approx({"blank_recall": 2 / 3})  # rows 3, 4 of 3, 4, 5
    assert found["composites"] == {"blank_recall": None}
    assert "task metric 'blank_recall'" in found["composites_reason"]["blank_recall"]


QA_SCORE = scoring.qa()
FACTS = [records.ItemFacts(f"t/test/{i}", f"evals/t.py::t/test/{i}[m]", "t", "m", "test", i)
         for i in range(6)]  # fmt: skip


def _qa_row(value: str, blank: bool) -> dict[str, Any]:
    return {"answer_value": value, "ref_ids": [] if blank else ["doc1"], "is_blank": blank}


def _scored(i: int, row: dict[str, Any], response: str) -> ItemRecord:
    """A scored record with the QA scorer's own components (what `records.evaluated` keeps)."""
    score = QA_SCORE(response, row["answer_value"], row)
    target = row["answer_value"]
    return record(i, target, score.extracted, components=dict(score.components))


def _errored(i: int, row: dict[str, Any]) -> ItemRecord:
    """The record an item that errored after its row and target were read leaves."""
    return records.errored(
        FACTS[i], worker="w", target=row["answer_value"], error="backend failed",
        components=records.error_components(QA_SCORE, row),
    )  # fmt: skip


def test_errored_item_counts_only_in_the_components_that_apply_to_its_row() -> None:
    # Case A: one unanswerable item answered blank; one answerable item errored.
    found = task_figures([
        _scored(0, _qa_row("is_blank", True), "Answer: is_blank"),
        _errored(1, _qa_row("450", False)),
    ])  # fmt: skip
    # na_recall applies to the unanswerable item only: 1/1 (not 1/2, the errored answerable
    # item is no unanswerable question); value_accuracy and ref_overlap apply to both: 1/2.
    assert found["components"] == {"value_accuracy": 0.5, "ref_overlap": 0.5, "na_recall": 1.0}
    assert found["components_n"] == {"value_accuracy": 2, "ref_overlap": 2, "na_recall": 1}


def test_errored_unanswerable_items_count_0_in_na_recall_as_in_recall_of_is_blank() -> None:
    # Case B: one answerable item right, two unanswerable answered blank, two unanswerable
    # errored. na_recall = (1 + 1 + 0 + 0) / 4, the same as recall("is_blank") = 2/4.
    rows = [_qa_row("12", False)] + [_qa_row("is_blank", True)] * 4
    found = task_figures(
        [
            _scored(0, rows[0], "Answer: 12\nReferences: [doc1]"),
            _scored(1, rows[1], "Answer: is_blank"),
            _scored(2, rows[2], "The documents do not say."),
            _errored(3, rows[3]),
            _errored(4, rows[4]),
        ],
        metrics={"blank_recall": metrics.recall("is_blank")},
    )
    assert found["components"]["na_recall"] == 0.5
    assert found["components_n"]["na_recall"] == 4
    assert found["task_metrics"] == {"blank_recall": 0.5}
    # value_accuracy: 3 right of 5 (the errored ones 0).
    assert found["components"]["value_accuracy"] == pytest.approx(3 / 5)
