"""Backend agreement: per-item comparison, task summary and whole comparison runs."""

from __future__ import annotations

import json
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
        reference_latency_s=None,
        reference_tokens_in=None,
        reference_tokens_out=None,
        reference_cached=None,
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
    assert 0.5 < c["response_similarity"] < 1.0
    assert c["reasoning_similarity"] == 0.0


def test_binary_mapping_and_unparsed_sides() -> None:
    binary = {"hate": "toxic", "harassment": "toxic", "none": "ok"}.__getitem__
    c = compare_item("hate", "harassment", "hate", "harassment", binary)
    assert c["binary_match"] and not c["finegrain_match"]
    unparsed = compare_item("???", "???", INVALID, INVALID)
    assert unparsed["binary_match"] and not unparsed["both_parsed"], "alike, flagged as unparsed"
    one_sided = compare_item("Label: hate", "???", "hate", None, binary)
    assert not one_sided["binary_match"] and one_sided["reference_label"] == INVALID


def test_summary_rates_and_assessment_bands() -> None:
    agree = compared("Label: toxic", "Label: toxic", "toxic", "toxic")
    differ = compared("Label: toxic", "Label: non-toxic", "toxic", "non-toxic")
    summary = summarize_agreement([agree] * 19 + [differ])
    assert summary["agreement"] == pytest.approx(0.95)
    assert summary["assessment"].labels == "PASS"
    summary = summarize_agreement([agree] * 18 + [differ] * 2)
    assert summary["assessment"].labels == "CAUTION"
    summary = summarize_agreement([agree] * 17 + [differ] * 3)
    assert summary["assessment"] == Assessment(labels="FAIL", similarity="PASS", overall="FAIL")
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
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
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
    assert metrics["reasoning_similarity"] == 0.0  # the primary reasons, the reference does not
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
