"""Unit tests for pytest_llmeval.score (extraction, labels, numbers, reasoning, text)."""

from __future__ import annotations

import pytest

from pytest_llmeval.score.extraction import Extraction
from pytest_llmeval.score.labels import INVALID, parse_label
from pytest_llmeval.score.numbers import (
    extract_gsm8k,
    gsm8k_target,
    normalize_number,
    numbers_equal,
)
from pytest_llmeval.score.reasoning import split_reasoning
from pytest_llmeval.score.text import exact_match, normalize_text

HARMONY = (
    "<|channel|>analysis<|message|>We need 12 * 3 = 36, maybe 40?<|end|>"
    "<|start|>assistant<|channel|>final<|message|>The answer is 36.<|return|>"
)

# --- split_reasoning ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  The answer is 5. ", ("", "The answer is 5.")),
        ("<think>2+2=4</think>\n\nAnswer: 4", ("2+2=4", "Answer: 4")),
        (
            "<think>first</think>Partial. <think> second </think>Done.",
            ("first\nsecond", "Partial. Done."),
        ),
        ("<think>Let me count 1, 2, 3 and", ("Let me count 1, 2, 3 and", "")),
        ("Okay, 7 apples.\n</think>\n\n#### 8", ("Okay, 7 apples.", "#### 8")),
        ("<think></think>Yes", ("", "Yes")),
        (HARMONY, ("We need 12 * 3 = 36, maybe 40?", "The answer is 36.")),
        (
            "<|channel|>analysis<|message|>think<|end|><|start|>assistant"
            "<|channel|>final<|message|>Paris",
            ("think", "Paris"),
        ),
        ("<|channel|>analysis<|message|>still thinking about 9", ("still thinking about 9", "")),
        (
            "analysisThe user wants 2*21. That's 42.assistantfinal**42**",
            ("The user wants 2*21. That's 42.", "**42**"),
        ),
        ("", ("", "")),
    ],
    ids=[
        "plain",
        "think",
        "several-think",
        "unclosed-think",
        "lone-close",
        "empty-think",
        "harmony",
        "harmony-no-end",
        "harmony-no-final",
        "harmony-decoded",
        "empty",
    ],
)
def test_split_reasoning(text: str, expected: tuple[str, str]) -> None:
    assert split_reasoning(text) == expected


def test_split_reasoning_harmony_uses_last_final_message() -> None:
    text = (
        "<|channel|>final<|message|>draft 1<|end|>"
        "<|channel|>commentary<|message|>tool chatter<|end|>"
        "<|channel|>final<|message|>real answer<|end|>"
    )
    assert split_reasoning(text) == ("tool chatter", "real answer")


# --- normalize_number --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18", "18"),
        ("18.0", "18"),
        ("18.00", "18"),
        ("0.50", "0.5"),
        ("-3", "-3"),
        ("-0", "0"),
        (" $1,000. ", "1000"),
        ("$70,000", "70000"),
        (".5", "0.5"),
        ("-2.250", "-2.25"),
        ("1234567890123456789012", "1234567890123456789012"),
    ],
)
def test_normalize_number(text: str, expected: str) -> None:
    assert normalize_number(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "--5", "5%", "1e3", "12 apples", "."])
def test_normalize_number_rejects_non_numbers(text: str) -> None:
    assert normalize_number(text) is None


# --- extract_gsm8k -----------------------------------------------------------


def test_extract_gsm8k_strict() -> None:
    result = extract_gsm8k("She makes 9 * 2 = $18 every day.\n#### 18")
    assert result == Extraction("18", "strict", "She makes 9 * 2 = $18 every day. #### 18")


def test_extract_gsm8k_strict_with_comma_and_trailing_dot() -> None:
    assert extract_gsm8k("#### 1,000.") == Extraction("1000", "strict", "#### 1,000")


def test_extract_gsm8k_strict_takes_last_marker() -> None:
    result = extract_gsm8k("#### 5\nWait, I made an error.\n#### -$7.50")
    assert (result.value, result.method) == ("-7.5", "strict")


def test_extract_gsm8k_flexible_last_number() -> None:
    result = extract_gsm8k("First 3 boxes, then 4 more. The answer is $70,000.")
    assert (result.value, result.method) == ("70000", "flexible")
    assert result.span.endswith("$70,000")


def test_extract_gsm8k_ignores_numbers_in_reasoning() -> None:
    response = "<think>Maybe 17? No: 3 * 4 = 12.</think>The total is 12 dollars."
    assert extract_gsm8k(response).value == "12"
    assert extract_gsm8k("<think>#### 99</think>I get 5").value == "5"


def test_extract_gsm8k_unclosed_think_extracts_nothing() -> None:
    assert extract_gsm8k("<think>3 + 4 = 7, so") == Extraction(None, "none", "")


def test_extract_gsm8k_harmony() -> None:
    assert extract_gsm8k(HARMONY) == Extraction("36", "flexible", "The answer is 36")


def test_extract_gsm8k_no_number() -> None:
    assert extract_gsm8k("I cannot solve this.") == Extraction(None, "none", "")


def test_extract_gsm8k_hyphen_is_not_a_minus_sign() -> None:
    assert extract_gsm8k("between 10-20 people").value == "20"
    assert extract_gsm8k("x = -20").value == "-20"


def test_extract_gsm8k_span_is_cut_and_short() -> None:
    response = "Adding everything up step by step gives us a final value of " * 3 + "= 32"
    result = extract_gsm8k(response)
    assert result.value == "32"
    assert result.span.startswith("... ")
    assert result.span.endswith("= 32")
    assert len(result.span) <= 60


# --- gsm8k_target ------------------------------------------------------------


def test_gsm8k_target() -> None:
    field = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    assert gsm8k_target(field) == "72"
    assert gsm8k_target("...\n#### 1,250.00") == "1250"


@pytest.mark.parametrize("field", ["The answer is 72", "#### seventy-two", ""])
def test_gsm8k_target_missing_raises(field: str) -> None:
    with pytest.raises(ValueError, match="####"):
        gsm8k_target(field)


# --- numbers_equal -----------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "expected"),
    [
        ("18", "18.00", {}, True),
        ("$1,000", "1000", {}, True),
        ("18", "19", {}, False),
        ("0.1", "0.1000001", {}, False),
        ("0.1", "0.1000001", {"rel_tol": 1e-5}, True),
        ("100", "100.5", {"abs_tol": 1.0}, True),
        ("100000000000000000001", "100000000000000000000", {}, False),
        (None, "1", {}, False),
        ("1", None, {}, False),
        ("abc", "abc", {}, False),
    ],
)
def test_numbers_equal(
    a: str | None, b: str | None, kwargs: dict[str, float], expected: bool
) -> None:
    assert numbers_equal(a, b, **kwargs) is expected


def test_numbers_equal_rejects_negative_tolerance() -> None:
    with pytest.raises(ValueError):
        numbers_equal("1", "1", abs_tol=-1.0)


# --- normalize_text / exact_match -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  "Paris."  ', "paris"),
        ("**New   York**\n", "new york"),
        ("\u201cHello, World!\u201d", "hello, world"),
        ("-5", "-5"),
        ("...", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_exact_match() -> None:
    assert exact_match("<think>Could be Lyon.</think> Paris.", "paris")
    assert not exact_match("<think>Paris</think>Lyon", "Paris")
    assert not exact_match("The capital is Paris.", "Paris")


# --- parse_label -------------------------------------------------------------

LABELS = ["toxic", "non-toxic"]


def test_parse_label_exact() -> None:
    assert parse_label("  NON-TOXIC. ", LABELS) == Extraction("non-toxic", "exact", "NON-TOXIC.")


def test_parse_label_explicit_line_wins_over_earlier_mentions() -> None:
    response = "This is not toxic at all, it is polite.\n**Label:** Non-Toxic"
    result = parse_label(response, LABELS)
    assert (result.value, result.method) == ("non-toxic", "label")
    assert result.span == "**Label:** Non-Toxic"


def test_parse_label_last_explicit_line_wins() -> None:
    response = "Answer: toxic\nOn reflection...\nFinal answer: non-toxic"
    assert parse_label(response, LABELS).value == "non-toxic"


def test_parse_label_explicit_line_without_label_falls_back() -> None:
    response = "Classification: this one is hard\nI'd say toxic overall."
    result = parse_label(response, LABELS)
    assert (result.value, result.method) == ("toxic", "flexible")
    assert result.span == "... fication: this one is hard I'd say toxic"


def test_parse_label_longer_label_not_shadowed() -> None:
    assert parse_label("The comment is non-toxic.", LABELS).value == "non-toxic"
    # With only the short label, it must still not match inside "non-toxic".
    assert parse_label("The comment is non-toxic.", ["toxic"]).value == INVALID


def test_parse_label_earliest_occurrence_wins() -> None:
    response = "It looks toxic, though some would call it non-toxic."
    assert parse_label(response, LABELS).value == "toxic"


def test_parse_label_whole_words_only() -> None:
    assert parse_label("The review is positively glowing", ["positive"]).value == INVALID


def test_parse_label_returns_label_spelling_and_ignores_reasoning() -> None:
    response = "<think>It might be NEGATIVE.</think>The sentiment is Positive."
    assert parse_label(response, ["POSITIVE", "NEGATIVE"]).value == "POSITIVE"


def test_parse_label_multiword_label() -> None:
    response = "Overall:  very\n positive tone."
    assert parse_label(response, ["positive", "very positive"]).value == "very positive"


def test_parse_label_nothing_found() -> None:
    assert parse_label("I am not sure.", LABELS) == Extraction(INVALID, "none", "")
    assert parse_label("<think>toxic", LABELS) == Extraction(INVALID, "none", "")
    assert parse_label("toxic", []) == Extraction(INVALID, "none", "")
