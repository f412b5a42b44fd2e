"""Backend agreement: per-item comparison, task summary and whole comparison runs."""

from __future__ import annotations

import json
import os
import textwrap

import pandas as pd
import pytest

from conftest import assert_valid_run
from pytest_llmeval.analyze.agreement import summarize_agreement
from pytest_llmeval.analyze.metrics import AgreementThresholds, Assessment
from pytest_llmeval.analyze.record import Comparison
from pytest_llmeval.score.agreement import compare_item
from pytest_llmeval.score.labels import INVALID


def compared(primary: str, reference: str, primary_label: str, reference_label: str) -> Comparison:
    """A record's comparison part for two responses (the reference side's own facts are dummies)."""
    labels = compare_item(primary, reference, primary_label, reference_label)
    return Comparison(
        reference_model="ref",
        reference_raw_response=reference,
        reference_extracted=reference_label,
        reference_score=1.0,
        reference_correct=True,
        reference_latency_s=None,
        reference_tokens_in=None,
        reference_tokens_out=None,
        reference_cached=None,
        reference_prompt=None,
        reference_finish_reason=None,
        reference_batch_id=None,
        reference_batch_size=None,
        reference_batch_wall_s=None,
        reference_error=None,
        text="a message",
        **labels,
    )


def test_compare_item_separates_reasoning_before_comparing() -> None:
    primary = "<think>The message insults a group.</think>Label: toxic\nReason: insults a group"
    reference = "Label: toxic\nReason: it insults a group of people"
    c = compare_item(primary, reference, "toxic", "toxic")
    assert c["binary_match"] and c["finegrain_match"] and c["both_parsed"]
    assert (
        c["primary_reasoning"] == "The message insults a group." and c["reference_reasoning"] == ""
    )
    assert c["primary_response"].startswith("Label: toxic")
    assert 0.5 < c["response_indel_similarity"] < 1.0
    # Only one side reasoned: there is no pair of reasonings to compare.
    assert c["reasoning_indel_similarity"] is None


def test_two_sides_without_a_label_do_not_agree() -> None:
    # A garbage backend against an empty one: neither gave a label.
    garbage = compare_item("asdf qwerty zxcv", "", INVALID, INVALID)
    assert not garbage["binary_match"] and not garbage["finegrain_match"]
    assert not garbage["primary_parsed"] and not garbage["reference_parsed"]
    assert not garbage["both_parsed"]
    assert garbage["response_indel_similarity"] == 0.0
    empty = compare_item("", "", None, None)
    assert not empty["binary_match"] and not empty["finegrain_match"]
    assert empty["response_indel_similarity"] is None  # two empty texts: undefined, not 1.0
    assert empty["reasoning_indel_similarity"] is None


def test_binary_mapping_and_unparsed_sides() -> None:
    binary = {"hate": "toxic", "harassment": "toxic", "none": "ok"}.__getitem__
    c = compare_item("hate", "harassment", "hate", "harassment", binary)
    assert c["binary_match"] and not c["finegrain_match"]
    unparsed = compare_item("???", "???", INVALID, INVALID)
    assert not unparsed["binary_match"] and not unparsed["both_parsed"]
    one_sided = compare_item("Label: hate", "???", "hate", None, binary)
    assert not one_sided["binary_match"] and one_sided["reference_label"] == INVALID


def test_reasoning_similarity_only_where_both_sides_reasoned() -> None:
    both = compared(
        "<think>it is rude</think>Label: toxic",
        "<think>it is rude</think>Label: toxic",
        "toxic",
        "toxic",
    )
    one = compared("<think>it is rude</think>Label: toxic", "Label: toxic", "toxic", "toxic")
    assert both.reasoning_indel_similarity == 1.0 and one.reasoning_indel_similarity is None
    summary = summarize_agreement([both, one, one])
    assert summary["reasoning_indel_similarity"] == 1.0
    assert summary["reasoning_indel_similarity_n"] == 1
    none = summarize_agreement([one, one])
    # Models that do not both reason: nothing to gate on (a gate on it fails: no data).
    assert none["reasoning_indel_similarity"] is None
    assert none["reasoning_indel_similarity_n"] == 0


def test_garbage_against_empty_is_zero_agreement() -> None:
    rows = [compared(f"zzz {i}", "", INVALID, INVALID) for i in range(10)]
    summary = summarize_agreement(rows)
    assert summary["agreement"] == 0.0 and summary["finegrain_agreement"] == 0.0
    assert summary["both_parse_rate"] == 0.0
    assert summary["kappa"] is None and summary["kappa_n"] == 0
    assert summary["assessment"].labels == "FAIL"


def test_kappa_next_to_raw_agreement_on_a_skewed_sample() -> None:
    # 17 of 20 benign on both sides: raw agreement 0.9 looks fine, kappa says otherwise
    # (statsmodels cohens_kappa on the same table: 0.4444444444444444).
    pairs = [("non-toxic", "non-toxic")] * 17
    pairs += [("toxic", "toxic"), ("toxic", "non-toxic"), ("non-toxic", "toxic")]
    rows = [compared(f"Label: {a}", f"Label: {b}", a, b) for a, b in pairs]
    rows.append(compared("Label: toxic", "no idea", "toxic", INVALID))  # not in kappa
    summary = summarize_agreement(rows)
    assert summary["agreement"] == pytest.approx(18 / 21)
    assert summary["kappa"] == pytest.approx(0.44444444444444436)
    assert summary["finegrain_kappa"] == pytest.approx(0.44444444444444436)
    assert summary["kappa_n"] == 20


def test_a_reference_that_always_fails_is_no_agreement() -> None:
    failed = Comparison(
        **{
            **vars(compared("Label: toxic", "x", "toxic", "toxic")),
            **compare_item("Label: toxic", None, "toxic", None),
            "reference_error": "ConnectionError: refused",
            "reference_raw_response": None,
            "reference_score": None,
            "reference_correct": None,
        }
    )
    summary = summarize_agreement([failed] * 3, uncompared=1)
    assert summary["reference_model"] == "ref" and summary["reference_errors"] == 3
    assert summary["agreement"] == 0.0 and summary["compared"] == 0
    assert summary["agreement_answered"] is None and summary["kappa"] is None
    assert summary["reference_accuracy"] is None and summary["reference_generated"] == 0
    assert summary["assessment"].labels == "FAIL"


def test_reference_accuracy_is_a_pass_rate_not_a_mean_score() -> None:
    # A partial-credit scorer: the reference scored 1.0, 0.7 and 0.7 with pass_threshold 1.0.
    # Before, reference_accuracy was the mean score 0.8 with a Wilson interval on a fractional
    # sum; it is the share that passed, as the primary's accuracy.
    base = compared("Label: toxic", "Label: toxic", "toxic", "toxic")
    partial = Comparison(**{**vars(base), "reference_score": 0.7, "reference_correct": False})
    summary = summarize_agreement([base, partial, partial])
    assert summary["reference_accuracy"] == pytest.approx(1 / 3)
    # Wilson 95% for 1 of 3 (statsmodels proportion_confint(1, 3, method="wilson")).
    assert summary["reference_accuracy_ci95"] == pytest.approx(
        [0.06149194472039537, 0.7923403991979523], abs=1e-6
    )


def test_summary_rates_and_assessment_bands() -> None:
    agree = compared("Label: toxic", "Label: toxic", "toxic", "toxic")
    differ = compared("Label: toxic", "Label: non-toxic", "toxic", "non-toxic")
    summary = summarize_agreement([agree] * 19 + [differ])
    assert summary["agreement"] == pytest.approx(0.95)
    assert summary["assessment"].labels == "PASS"
    summary = summarize_agreement([agree] * 18 + [differ] * 2)
    assert summary["assessment"].labels == "CAUTION"
    summary = summarize_agreement([agree] * 17 + [differ] * 3)
    assert summary["assessment"] == Assessment(
        labels="FAIL", indel_similarity="PASS", overall="FAIL"
    )
    strict = summarize_agreement([agree] * 19 + [differ], AgreementThresholds(labels_pass=0.99))
    assert strict["assessment"].labels == "CAUTION"
    low, high = summarize_agreement([agree] * 19 + [differ])["agreement_ci95"]
    assert low < 0.95 < high


RESPONDERS = textwrap.dedent(
    """
    def _text(messages):
        return messages[-1]["content"].split("Message:\\n", 1)[1]

    def primary(messages, settings):
        text = _text(messages)
        label = "toxic" if "idiot" in text else "non-toxic"
        return f"<think>checking</think>Label: {label}\\nReason: looked at the words"

    def reference(messages, settings):
        text = _text(messages)
        if "FLIP" in text:
            return "Label: non-toxic\\nReason: seems fine"
        if "MUMBLE" in text:
            return "I cannot say."
        label = "toxic" if "idiot" in text else "non-toxic"
        return f"Label: {label}\\nReason: looked at the words"

    def garbage(messages, settings):
        return "zq@@ xx ~~ " + _text(messages)[::-1]

    def empty(messages, settings):
        return ""

    def flaky(messages, settings):
        text = _text(messages)
        if text.endswith(("1", "5")):
            raise ConnectionError("server hung up")
        return reference(messages, settings)
    """
)

TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    tox = Task(
        name="tox",
        data=DataSource(files="tox.jsonl"),
        prompt=ChatPrompt(system="Classify.", user="Message:\\n{text}"),
        target="label",
        scorer=scoring.label(["toxic", "non-toxic"]),
        generation=Generation(max_new_tokens=32),
        label_field="label",
        gates=["agreement >= 0.9"],
    )
    """
)


@pytest.fixture
def toxproject(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # Subprocess runs: the report writes parquet, and pyarrow's type registry does not
    # survive pytester's in-process module snapshots.
    # Prepended: an outer PYTHONPATH (a checkout under test) stays visible to the subprocess.
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    pytester.makepyfile(responders=RESPONDERS, test_tox=TASK)
    rows = []
    for i in range(20):
        toxic = i % 2 == 0
        text = f"you are an idiot {i}" if toxic else f"have a nice day {i}"
        if i == 3:
            text += " FLIP"  # benign; the reference calls it non-toxic too: agreement
        if i == 4:
            text += " FLIP"  # toxic; the reference says non-toxic: a disagreement
        if i == 6:
            text += " MUMBLE"  # the reference gives no label: a parse failure
        rows.append({"text": text, "label": "toxic" if toxic else "non-toxic"})
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "tox.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--model",
        "callable:responders:primary",
        "--compare-backend",
        "callable:responders:reference",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *args,
    )


def test_comparison_run_gates_on_agreement_and_writes_the_table(
    toxproject: pytest.Pytester,
) -> None:
    result = run(toxproject)
    # 18 of 20 agree: 0.9 holds the gate; the two disagreements are failed items.
    result.assert_outcomes(passed=19, failed=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*labels differ: callable:responders:primary toxic, callable:responders:reference non-toxic*",
            "*labels differ: callable:responders:primary toxic, callable:responders:reference [[]invalid[]]*",
            "*tox*callable:responders:primary vs callable:responders:reference*0.900*CAUTION*",
        ]
    )
    report = assert_valid_run(toxproject.path / "out")
    metrics = report["tasks"]["tox"]["models"]["callable:responders:primary"]["metrics"]
    assert metrics["agreement"] == pytest.approx(0.9)
    assert metrics["reference_parse_rate"] == pytest.approx(0.95)
    assert metrics["primary_parse_rate"] == 1.0 and metrics["both_parse_rate"] == pytest.approx(
        0.95
    )
    assert metrics["accuracy"] == 1.0 and metrics["reference_accuracy"] == pytest.approx(0.9)
    assert metrics["assessment"]["labels"] == "CAUTION"
    # The primary reasons, the reference does not: no reasoning pairs to compare.
    assert metrics["reasoning_indel_similarity"] is None
    assert metrics["reasoning_indel_similarity_n"] == 0
    assert metrics["response_indel_similarity_n"] == 20
    assert report["files"]["agreement"] == "agreement.parquet"

    table = pd.read_parquet(toxproject.path / "out" / "agreement.parquet")
    assert len(table) == 20
    for side in ("primary", "reference"):
        for column in ("label", "response", "reasoning", "parsed"):
            assert f"{side}_{column}" in table.columns
    misses = table[~table.binary_match]
    assert sorted(misses.text.str.split().str[-1]) == ["FLIP", "MUMBLE"]
    assert set(misses.ground_truth) == {"toxic"}
    assert (table.primary_reasoning == "checking").all()

    # The gate decides the exit status.
    assert run(toxproject, "--gate", "tox:agreement>=0.95").ret == 1


def test_task_level_reference_declaration(toxproject: pytest.Pytester) -> None:
    source = (toxproject.path / "test_tox.py").read_text()
    (toxproject.path / "test_tox.py").write_text(
        source.replace(
            'label_field="label",',
            'label_field="label", reference="callable:responders:reference",',
        )
    )
    result = toxproject.runpytest_subprocess(
        "--model",
        "callable:responders:primary",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.assert_outcomes(passed=19, failed=2)
    report = json.loads((toxproject.path / "out" / "report.json").read_text())
    assert report["gates"][0]["metric"] == "agreement" and report["gates"][0]["passed"]


def test_garbage_against_empty_backend_is_zero_agreement_and_fails_the_gate(
    toxproject: pytest.Pytester,
) -> None:
    result = toxproject.runpytest_subprocess(
        "--model",
        "callable:responders:garbage",
        "--compare-backend",
        "callable:responders:empty",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "--gate",
        "tox:agreement>=0.95",
    )
    # Neither side gave a label on any item: every item is a disagreement.
    result.assert_outcomes(failed=21)  # 20 items and the gate
    assert result.ret == 1
    report = assert_valid_run(toxproject.path / "out")
    metrics = report["tasks"]["tox"]["models"]["callable:responders:garbage"]["metrics"]
    assert metrics["agreement"] == 0.0 and metrics["finegrain_agreement"] == 0.0
    assert metrics["both_parse_rate"] == 0.0 and metrics["primary_parse_rate"] == 0.0
    assert metrics["kappa"] is None and metrics["kappa_n"] == 0
    # One side is empty, the other is not: similarity 0 (defined), not 1.
    assert metrics["response_indel_similarity"] == 0.0
    gate = next(g for g in report["gates"] if g["gate"] == "agreement>=0.95")
    assert not gate["passed"] and gate["value"] == 0.0


def test_reference_errors_are_the_reference_s(toxproject: pytest.Pytester) -> None:
    result = toxproject.runpytest_subprocess(
        "--model",
        "callable:responders:primary",
        "--compare-backend",
        "callable:responders:flaky",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    # Rows 1, 5, 11, 15: the reference raises. Those items are errors (they could not be
    # compared); the rest compare as before (row 4 FLIP and row 6 MUMBLE disagree).
    result.assert_outcomes(passed=14, failed=3, errors=4)  # failed: 2 items, the gate
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*reference callable:responders:flaky failed: ConnectionError: server hung up*"]
    )
    report = assert_valid_run(toxproject.path / "out")
    metrics = report["tasks"]["tox"]["models"]["callable:responders:primary"]["metrics"]
    assert metrics["n_errors"] == 0, "the primary did not fail"
    assert metrics["reference_errors"] == 4
    assert metrics["compared"] == 16
    # Errors count as not agreeing (n = all 20 items); over the compared ones 14 of 16.
    assert metrics["agreement"] == pytest.approx(14 / 20)
    assert metrics["agreement_answered"] == pytest.approx(14 / 16)
    # The task's gate states the agreement's own n.
    (gate,) = report["gates"]
    assert gate["metric"] == "agreement" and gate["n"] == 20 and not gate["passed"]
    # Each side's own figures: the primary generated all 20, the reference 16.
    assert metrics["generated"] == 20 and metrics["reference_generated"] == 16
    assert metrics["reference_cached"] == 0
    assert metrics["latency_p50"] is not None and metrics["reference_latency_p50"] is not None
    assert metrics["reference_latency_p95"] is not None
    # The callable responders return plain text: no token counts on either side, so no tok/s.
    assert metrics["reference_tokens_per_s"] is None and metrics["tokens_per_s"] is None

    items = [json.loads(line) for line in (toxproject.path / "out" / "items.jsonl").open()]
    assert len(items) == 20
    failed = [r for r in items if r["outcome"] == "error"]
    assert sorted(r["row_index"] for r in failed) == [1, 5, 11, 15]
    for record in items:
        # The primary's generation and score are intact on every record.
        assert record["response"].startswith("<think>checking</think>Label:")
        assert record["extracted"] in ("toxic", "non-toxic") and record["score"] == 1.0
        assert record["latency_s"] is not None and record["cached"] is False
        assert record["tokens_out"] is None
        comparison = record["comparison"]
        assert comparison["reference_model"] == "callable:responders:flaky"
        if record["outcome"] == "error":
            assert record["error"].startswith("reference callable:responders:flaky failed:")
            assert comparison["reference_error"] == "ConnectionError: server hung up"
            assert comparison["reference_raw_response"] is None
            assert comparison["binary_match"] is None
            assert comparison["primary_label"] in ("toxic", "non-toxic")
        else:
            assert comparison["reference_error"] is None
            assert comparison["reference_prompt"].startswith("[system] Classify.")
            assert comparison["reference_finish_reason"] == "stop"
            assert comparison["reference_batch_id"] and comparison["reference_batch_wall_s"] >= 0
    assert metrics["tokens_out"] is None and metrics["reference_tokens_out"] is None
    # Only compared items are in the agreement table.
    table = pd.read_parquet(toxproject.path / "out" / "agreement.parquet")
    assert len(table) == 16


def test_a_cached_reference_generation_carries_no_old_timings(
    toxproject: pytest.Pytester,
) -> None:
    # Before: a rerun served the reference from the cache but its records kept the first
    # run's latency and batch, while the primary's cached records had them blanked.
    args = [
        "--model", "callable:responders:primary",
        "--compare-backend", "callable:responders:primary",
        "--llmeval-data-dir=data", "-W", "ignore::pytest.PytestAssertRewriteWarning",
    ]  # fmt: skip
    toxproject.runpytest_subprocess(*args, "--llmeval-report", "first/report.json")
    toxproject.runpytest_subprocess(*args, "--llmeval-report", "second/report.json")
    items = [json.loads(line) for line in (toxproject.path / "second/items.jsonl").open()]
    assert items and all(r["comparison"]["reference_cached"] is True for r in items)
    for record in items:
        comparison = record["comparison"]
        assert comparison["reference_latency_s"] is None and record["latency_s"] is None
        assert (
            comparison["reference_batch_id"] is None
            and comparison["reference_batch_wall_s"] is None
        )
    report = assert_valid_run(toxproject.path / "second")
    metrics = report["tasks"]["tox"]["models"]["callable:responders:primary"]["metrics"]
    assert metrics["reference_cached"] == len(items) and metrics["reference_generated"] == 0
    assert metrics["reference_latency_p50"] is None
