"""The QA scorer (`scoring.qa`): hand-written responses against hand-computed scores."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmeval.score.qa import BLANK, is_blank_text, jaccard, parse_qa, parse_refs
from pytest_llmeval.scoring import TargetError, qa

SCORE = qa()


def row(value: Any, refs: Any = ("doc-a",), blank: Any = False) -> dict[str, Any]:
    return {"answer_value": value, "ref_ids": list(refs), "is_blank": blank}


@pytest.mark.parametrize(
    ("answer", "right"),
    [
        ("1000", True),
        ("1001", True),  # |1001 - 1000| = 1 <= 0.001 * 1001
        ("999", True),  # 1 <= 0.001 * 1000
        ("1002", False),  # 2 > 0.001 * 1002
        ("998.9", False),  # 1.1 > 1.0
        ("1,000", True),
        ("$1,000.4", True),
        ("1000 kWh", True),
        ("1e3", True),
    ],
)
def test_numbers_match_within_a_tenth_of_a_percent(answer: str, right: bool) -> None:
    score = SCORE(f"Answer: {answer}\nReferences: [doc-a]", "1000", row("1000"))
    assert score.value == (1.0 if right else 0.0)
    assert score.components["value_accuracy"] == score.value


def test_tolerance_is_a_parameter() -> None:
    loose, exact_only = qa(tolerance=0.01), qa(tolerance=0.0)
    assert loose("Answer: 1009", "", row("1000")).value == 1.0  # 9 <= 0.01 * 1009
    assert loose("Answer: 1011", "", row("1000")).value == 0.0  # 11 > 10.11
    assert exact_only("Answer: 1000.0", "", row("1000")).value == 1.0
    assert exact_only("Answer: 1000.01", "", row("1000")).value == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        qa(tolerance=-1)


def test_percent_and_currency_values() -> None:
    assert SCORE("Answer: 12%", "", row("12")).value == 1.0
    assert SCORE("Answer: 12", "", row("12%")).value == 1.0
    assert SCORE("Answer: $3.5 million", "", row("3.5")).extracted == "3.5"
    assert SCORE("Answer: 13%", "", row("12%")).value == 0.0


def test_text_values_by_normalised_exact_match() -> None:
    truth = row("Mara Ilves")
    assert SCORE("Answer: **mara ilves.**", "", truth).value == 1.0
    assert SCORE("Answer: Dr. Mara Ilves", "", truth).value == 0.0
    # A name with a digit in it is compared as text, not read as a number.
    finch = SCORE("Answer: Finch-7B", "", row("Finch-7B"))
    assert (finch.value, finch.extracted) == (1.0, "finch-7b")
    assert SCORE("Answer: 7", "", row("Finch-7B")).value == 0.0


def test_blank_truth_is_right_only_when_the_model_says_blank() -> None:
    truth = row(BLANK, refs=(), blank=True)
    said_blank = SCORE("Answer: is_blank\nReferences: []", BLANK, truth)
    assert said_blank.value == 1.0 and said_blank.extracted == BLANK
    assert said_blank.components == {
        "value_accuracy": 1.0,
        "ref_overlap": 1.0,  # nothing to cite, nothing cited
        "na_recall": 1.0,
    }
    guessed = SCORE("Answer: 42\nReferences: [doc-a]", BLANK, truth)
    assert guessed.components == {"value_accuracy": 0.0, "ref_overlap": 0.0, "na_recall": 0.0}
    # Citing nothing is no credit on its own: the blank answer is the reference there.
    uncited = SCORE("Answer: 42\nReferences: []", BLANK, truth)
    assert uncited.components == {"value_accuracy": 0.0, "ref_overlap": 0.0, "na_recall": 0.0}
    # Blank, but citing a document anyway: {is_blank} vs {is_blank, doc-a}.
    hedged = SCORE("Answer: is_blank\nReferences: [doc-a]", BLANK, truth)
    assert hedged.components["ref_overlap"] == pytest.approx(1 / 2)


def test_blank_answer_on_an_answerable_question_is_wrong() -> None:
    score = SCORE("Answer: not in the documents\nReferences: []", "42", row("42"))
    assert score.value == 0.0 and score.extracted == BLANK
    assert score.components == {"value_accuracy": 0.0, "ref_overlap": 0.0, "na_recall": None}


def test_blank_flag_spellings_and_fallback_to_the_value() -> None:
    said = "Answer: is_blank"
    assert SCORE(said, "", row("is_blank", refs=(), blank="TRUE")).components["na_recall"] == 1.0
    assert SCORE(said, "", row("7", blank="false")).components["na_recall"] is None
    # No is_blank field: a value of "is_blank" (or none) marks the row blank.
    assert SCORE(said, "", {"answer_value": "is_blank", "ref_ids": []}).value == 1.0
    assert SCORE(said, "", {"answer_value": "", "ref_ids": []}).value == 1.0


def test_ref_overlap_is_the_jaccard_of_cited_and_true_ids() -> None:
    truth = row("5", refs=("doc-a", "doc-b"))
    cases = {
        "References: [doc-a, doc-b]": 1.0,
        "References: [doc-a]": 1 / 2,
        "References: [doc-a, doc-c]": 1 / 3,
        "References: doc-b; doc-c; doc-d": 1 / 4,
        "References: ['DOC-A', 'doc-b']": 1.0,
        "References: [doc-c]": 0.0,
        "": 0.0,
    }
    for refs, expected in cases.items():
        score = SCORE(f"Answer: 5\n{refs}", "5", truth)
        assert score.components["ref_overlap"] == pytest.approx(expected), refs
        assert score.value == 1.0  # the value is scored on its own


def test_jaccard_and_refs() -> None:
    assert jaccard([], []) == 1.0
    assert jaccard(["a"], []) == 0.0
    assert jaccard(["a", "b", "c"], ["b", "c", "d", "e"]) == pytest.approx(2 / 5)
    assert parse_refs("['a', 'b']") == ("a", "b")
    assert parse_refs("[a, a, B] (the second is a guess)") == ("a", "b")
    assert parse_refs("a b (mostly)") == ("a", "b")
    assert parse_refs(["is_blank"]) == () and parse_refs(None) == ()


@pytest.mark.parametrize(
    ("response", "value", "refs", "method"),
    [
        ("Answer: 96.4\nReferences: [finch, kestrel]", "96.4", ("finch", "kestrel"), "lines"),
        ("**Final answer:** 12\n**Sources:** finch", "12", ("finch",), "lines"),
        ("Answer:\n12\nReferences: [x]", "12", ("x",), "lines"),
        ("The answer is: 2021.\nRefs: x", "2021", ("x",), "lines"),
        ("The answer is Kestrel", "Kestrel", (), "lines"),
        ("Answer the question: 5", "Answer the question: 5", (), "first-line"),
        ('Sure: {"answer_value": 3, "ref_ids": ["x"], "is_blank": false}', "3", ("x",), "json"),
        ('{"answer": "n/a", "references": []}', BLANK, (), "json"),
        ('{"is_blank": true}', BLANK, (), "json"),
        ("<think>It is 5 or 6.</think>Answer: 6", "6", (), "lines"),
        (
            "The lab has 140 staff.\nReferences: [lab]",
            "The lab has 140 staff.",
            ("lab",),
            "first-line",
        ),
        ("The context does not mention the cost.", BLANK, (), "first-line"),
        ("Answer: cannot be answered from the passages", BLANK, (), "lines"),
        ("", None, (), "none"),
        ("Answer:\nReferences: [x]", None, ("x",), "none"),
        ("{not json\n\nAnswer: 4", "4", (), "lines"),
    ],
)
def test_parse_qa_formats(
    response: str, value: str | None, refs: tuple[str, ...], method: str
) -> None:
    found = parse_qa(response)
    assert (found.value, found.ref_ids, found.method) == (value, refs, method)


def test_malformed_responses_score_zero_without_raising() -> None:
    for response in ("", "   \n", "Answer:", "{", "References: [doc-a]", "\x00\x01"):
        score = SCORE(response, "7", row("7"))
        assert score.value == 0.0 and score.components["na_recall"] is None, response


def test_blank_phrases() -> None:
    for text in (
        "is_blank",
        "N/A",
        "Unknown.",
        "I don't know",
        "It is not in the provided documents",
    ):
        assert is_blank_text(text), text
    for text in ("42", "Mara Ilves", "not 42 but 43", "The knowledge is documented"):
        assert not is_blank_text(text), text


def test_answerable_row_without_a_value_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="answer_value"):
        SCORE("Answer: 3", "", {"ref_ids": ["a"], "is_blank": False})


def test_field_names_are_parameters() -> None:
    score = qa(value_field="gold", refs_field="docs", blank_field="na")
    out = score("Answer: 3\nReferences: [x]", "", {"gold": "3", "docs": "x", "na": False})
    assert out.components == {"value_accuracy": 1.0, "ref_overlap": 1.0, "na_recall": None}


def test_composite_of_the_documented_example() -> None:
    """The WattBot composite over three items, by hand: value (1+0+1)/3, ref (1+0.5+1)/3,
    na recall 1/1 (the one blank-truth item)."""
    scores = [
        SCORE("Answer: 5\nReferences: [a]", "", row("5", refs=("a",))),
        SCORE("Answer: 6\nReferences: [a]", "", row("5", refs=("a", "b"))),
        SCORE("Answer: is_blank", "", row(BLANK, refs=(), blank=True)),
    ]

    def mean(name: str) -> float:
        values = [s.components[name] for s in scores if s.components[name] is not None]
        return sum(values) / len(values)  # type: ignore[arg-type]

    composite = (
        0.75 * mean("value_accuracy") + 0.15 * mean("ref_overlap") + 0.10 * mean("na_recall")
    )
    assert composite == pytest.approx(0.75 * 2 / 3 + 0.15 * 2.5 / 3 + 0.10 * 1.0)


@pytest.mark.parametrize(
    ("answer", "truth"),
    [
        ("450 MW (as of 2023)", "450"),  # a parenthesised remark is not the value
        ("1,200 GPUs [doc3]", "1200"),  # nor is a bracketed citation
        ("5 kWh per day for 7 days", "5"),  # the first number is the value, not the last
        ("38% of data centres in 2022", "38"),  # a later year is context
    ],
)
def test_value_with_text_around_it_reads_its_first_number(answer: str, truth: str) -> None:
    score = SCORE(f"Answer: {answer}\nReferences: [doc-a]", "", row(truth))
    assert (score.value, score.extracted) == (1.0, truth)
