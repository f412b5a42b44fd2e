"""A table of realistic responses and the answer each must be read as (docs/scoring.md).

One row per case: the response a model gave, then the expected extraction (value, method).
Numbers: GSM8K-style answers, markdown, LaTeX, signs, grouping, fractions, reasoning models.
Labels: a toxicity classifier's answers (negations, dash variants, two labels), other label sets.
"""

from __future__ import annotations

import pytest

from pytest_llmeval.score.labels import INVALID, parse_label
from pytest_llmeval.score.numbers import extract_gsm8k

THINK = "<think>Let me see: 12 apples, she eats 3, so 9... or 10? Label: toxic.</think>\n"


def harmony(analysis: str, final: str) -> str:
    """A gpt-oss response with its special tokens kept."""
    return (
        f"<|channel|>analysis<|message|>{analysis}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{final}<|return|>"
    )


# fmt: off
# (id, response, expected value, expected method)
NUMBER_CASES: list[tuple[str, str, str | None, str]] = [
    # --- plain GSM8K answers
    ("gsm8k-style", "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n9 * 2 = $<<9*2=18>>18\n#### 18", "18", "strict"),
    ("strict-no-space", "So the total is 42.\n####42", "42", "strict"),
    ("strict-trailing-period", "#### 18.", "18", "strict"),
    ("strict-with-unit", "She earns 18 dollars a day.\n#### 18 dollars", "18", "strict"),
    ("strict-decimal-zeros", "#### 18.00", "18", "strict"),
    ("strict-decimal", "The price is 2.5 each.\n#### 7.50", "7.5", "strict"),
    ("strict-thousands-comma", "#### 1,000", "1000", "strict"),
    ("strict-currency", "#### $70,000", "70000", "strict"),
    ("strict-percent", "The discount is\n#### 25%", "25", "strict"),
    # --- which #### counts: the first one followed by a number (as lm-evaluation-harness)
    (
        "first-marker-wins-over-continuation",
        "She has 5 left.\n#### 5\n\nQuestion: Tom buys 3 pens at $2 each.\nAnswer: 3 * 2 = 6\n#### 6",
        "5",
        "strict",
    ),
    ("first-marker-wins-over-correction", "#### 5\nWait, I made an error.\n#### 7", "5", "strict"),
    ("marker-without-number-skipped", "#### Final answer\nThe total is 12.\n#### 12", "12", "strict"),
    ("markdown-heading-step-is-not-answer", "#### 1. Count the eggs\n16 - 7 = 9 eggs left.\n#### 9", "9", "strict"),
    ("markdown-heading-step-colon", "#### 2: Multiply\n9 * 2 = 18", "18", "flexible"),
    ("answer-then-remark-on-last-line", "16 - 3 - 4 = 9, 9 * 2 = 18\n#### 18. She makes $18.", "18", "strict"),
    # --- markdown emphasis and LaTeX around the strict answer
    ("strict-bold", "#### **18**\nSo she has 3 left over.", "18", "strict"),
    ("strict-italic", "#### *18*\nThat leaves 3.", "18", "strict"),
    ("strict-underscore-bold", "#### __18__ (3 eggs remain)", "18", "strict"),
    ("strict-code", "#### `18`\nDone in 2 steps.", "18", "strict"),
    ("strict-boxed", "#### \\boxed{18}\nCheck: 3 eggs remain.", "18", "strict"),
    ("strict-inline-math", "#### $18$\nwhich leaves 3", "18", "strict"),
    ("strict-paren-math", "#### \\(18\\) and 3 spare", "18", "strict"),
    ("strict-bold-currency", "#### **$1,250**\nper 4 weeks", "1250", "strict"),
    ("strict-textbf", "#### \\textbf{42} from 6 * 7", "42", "strict"),
    # --- signs in every common form
    ("strict-minus", "#### -5", "-5", "strict"),
    ("strict-unicode-minus", "#### \u22125", "-5", "strict"),
    ("strict-en-dash-minus", "#### \u20135", "-5", "strict"),
    ("strict-spaced-minus", "#### - 5", "-5", "strict"),
    ("strict-dollar-minus", "#### $-5", "-5", "strict"),
    ("strict-minus-dollar", "#### -$5", "-5", "strict"),
    ("strict-plus", "#### +5", "5", "strict"),
    ("flexible-dollar-minus", "The balance is $-5", "-5", "flexible"),
    ("flexible-minus-dollar", "He is down -$5.50 after 3 bets.\nFinal: -$5.50", "-5.5", "flexible"),
    ("flexible-unicode-minus", "The temperature drops to \u22125 degrees", "-5", "flexible"),
    ("flexible-en-dash-minus", "Change: \u20133", "-3", "flexible"),
    ("flexible-math-minus", "So $x = -12$.", "-12", "flexible"),
    ("range-hyphen-is-not-minus", "between 10-20 people", "20", "flexible"),
    ("range-en-dash-is-not-minus", "between 10\u201320 people", "20", "flexible"),
    ("subtraction-is-not-minus", "20 - 15 = 5", "5", "flexible"),
    ("bullet-is-not-minus", "Steps:\n- 3 bags of flour\n- 4 eggs", "4", "flexible"),
    # --- grouping
    ("strict-space-grouping", "#### 1 234", "1234", "strict"),
    ("strict-thin-space-grouping", "#### 1\u2009234", "1234", "strict"),
    ("strict-narrow-nbsp-grouping", "#### 12\u202f345\u202f678", "12345678", "strict"),
    ("flexible-thin-space-grouping", "The farm earns 1\u2009234 dollars", "1234", "flexible"),
    ("flexible-nbsp-grouping", "Total: 5\u00a0000", "5000", "flexible"),
    ("flexible-plain-space-does-not-group", "She buys 2 100 packs", "100", "flexible"),
    ("latex-comma-grouping", "The answer is $1{,}234$.", "1234", "flexible"),
    ("latex-thin-space-grouping", "The answer is \\(1\\,234\\).", "1234", "flexible"),
    ("malformed-grouping-is-no-number", "The total is 1,0000", None, "none"),
    ("strict-malformed-grouping", "#### 1,0000", None, "none"),
    ("list-is-no-number", "The first three are 1,2,3", None, "none"),
    ("european-thousands-is-no-number", "Total 1.234.567", None, "none"),
    ("comma-space-list", "The sides are 3, 4, and 5", "5", "flexible"),
    # --- fractions and scientific notation
    ("strict-fraction", "#### 3/4", "0.75", "strict"),
    ("strict-negative-fraction", "#### -3/4", "-0.75", "strict"),
    ("strict-repeating-fraction", "#### 1/3", "1/3", "strict"),
    ("strict-latex-frac", "#### $\\frac{3}{4}$", "0.75", "strict"),
    ("boxed-dfrac", "So the share is \\boxed{\\dfrac{5}{2}}.", "2.5", "boxed"),
    ("flexible-fraction", "She eats 3/4 of the pie.", "0.75", "flexible"),
    ("date-is-no-number", "It was on 12/25/2020", None, "none"),
    ("strict-scientific", "#### 1e3", "1000", "strict"),
    ("strict-scientific-negative-exponent", "#### 2.5E-3", "0.0025", "strict"),
    ("flexible-times-ten", "About $1.2 \\times 10^{3}$ cells", "1200", "flexible"),
    ("flexible-times-ten-unicode", "About 3 \u00d7 10^4 stars", "30000", "flexible"),
    # --- boxed and flexible
    ("boxed-without-marker", "Adding 3 + 4 gives 7.\n\\boxed{7}\nCheck: 7 - 4 = 3", "7", "boxed"),
    ("boxed-grouped", "\\boxed{1,000}", "1000", "boxed"),
    ("flexible-last-number", "First 3 boxes, then 4 more. The answer is $70,000.", "70000", "flexible"),
    ("flexible-bold", "The answer is **18**.", "18", "flexible"),
    ("flexible-leading-dot", "The probability is .5", "0.5", "flexible"),
    ("no-number", "I cannot solve this.", None, "none"),
    ("empty", "", None, "none"),
    # --- reasoning models
    ("think-then-strict", THINK + "She keeps 9.\n#### 9", "9", "strict"),
    ("think-numbers-ignored", "<think>Maybe 17? No: 3 * 4 = 12.</think>The total is 12 dollars.", "12", "flexible"),
    ("think-marker-ignored", "<think>#### 99</think>I get 5", "5", "flexible"),
    ("think-unclosed", "<think>3 + 4 = 7, so the answer", None, "none"),
    ("think-lone-close", "Okay, 7 apples.\n</think>\n\n#### 8", "8", "strict"),
    ("harmony-flexible", harmony("We need 12 * 3 = 36, maybe 40?", "The answer is 36."), "36", "flexible"),
    ("harmony-strict", harmony("12 * 3 = 36. #### 40?", "**Answer:** 36\n#### 36"), "36", "strict"),
    ("harmony-no-final", "<|channel|>analysis<|message|>still thinking about 9", None, "none"),
    ("harmony-decoded", "analysisThe user wants 2*21. That's 42.assistantfinal**42**", "42", "flexible"),
    ("harmony-decoded-strict", "analysis-5 + 3 = -2assistantfinal#### \u22122", "-2", "strict"),
]
# fmt: on


@pytest.mark.parametrize(
    ("response", "value", "method"),
    [case[1:] for case in NUMBER_CASES],
    ids=[case[0] for case in NUMBER_CASES],
)
def test_number_extraction(response: str, value: str | None, method: str) -> None:
    found = extract_gsm8k(response)
    assert (found.value, found.method) == (value, method)


TOXIC = ["toxic", "non-toxic"]
SAFE = ["toxic", "safe"]
SENTIMENT = ["positive", "negative", "neutral"]
YES_NO = ["yes", "no"]
CORRECT = ["correct", "incorrect"]

# fmt: off
# (id, response, labels, expected value, expected method)
LABEL_CASES: list[tuple[str, str, list[str], str, str]] = [
    # --- the format the toxicity prompt asks for
    ("label-line", "Label: toxic\nReason: It insults a group.", TOXIC, "toxic", "label"),
    ("label-line-negative", "Label: non-toxic\nReason: A friendly thank-you.", TOXIC, "non-toxic", "label"),
    ("bare-label", "Non-toxic.", TOXIC, "non-toxic", "exact"),
    ("bare-label-bold", "**TOXIC**", TOXIC, "toxic", "exact"),
    ("bold-label-line", "**Label:** Non-Toxic\n**Reason:** polite", TOXIC, "non-toxic", "label"),
    ("label-on-next-line", "Label:\nnon-toxic", TOXIC, "non-toxic", "label"),
    ("final-answer-line", "Answer: toxic\nOn reflection...\nFinal answer: non-toxic", TOXIC, "non-toxic", "label"),
    ("reason-mentions-other-label", "Label: toxic\nReason: It is not a non-toxic joke.", TOXIC, "toxic", "label"),
    ("label-line-wins-over-text", "This is not toxic at all, it is polite.\nLabel: non-toxic", TOXIC, "non-toxic", "label"),
    # --- spelling variants of a label
    ("space-variant", "Label: non toxic", TOXIC, "non-toxic", "label"),
    ("no-separator-variant", "Label: nontoxic", TOXIC, "non-toxic", "label"),
    ("en-dash-variant", "Label: Non\u2013toxic", TOXIC, "non-toxic", "label"),
    ("em-dash-variant", "Label: non\u2014toxic", TOXIC, "non-toxic", "label"),
    ("non-breaking-hyphen-variant", "Label: non\u2011toxic", TOXIC, "non-toxic", "label"),
    ("minus-sign-variant", "Label: non\u2212toxic", TOXIC, "non-toxic", "label"),
    ("underscore-variant", "Label: NON_TOXIC", TOXIC, "non-toxic", "label"),
    ("upper-case", "LABEL: TOXIC", TOXIC, "toxic", "label"),
    # --- negations: never the label they negate; the set's complement label when it has one
    ("not-toxic", "Label: not toxic", TOXIC, "non-toxic", "label"),
    ("Not-toxic", "Label: Not toxic", TOXIC, "non-toxic", "label"),
    ("free-text-not-toxic", "The message is not toxic.", TOXIC, "non-toxic", "flexible"),
    ("isnt-toxic", "This message isn't toxic.", TOXIC, "non-toxic", "flexible"),
    ("not-at-all-toxic", "It is not at all toxic.", TOXIC, "non-toxic", "flexible"),
    ("does-not-contain-toxic", "The text does not contain any toxic language.", TOXIC, "non-toxic", "flexible"),
    ("neither-nor", "Label: neither toxic nor harmful", TOXIC, "non-toxic", "label"),
    ("no-toxic-content", "There is no toxic content here.", TOXIC, "non-toxic", "flexible"),
    ("not-non-toxic", "Label: not non-toxic", TOXIC, "toxic", "label"),
    ("negation-and-label-agree", "It is not toxic; it is non-toxic.", TOXIC, "non-toxic", "flexible"),
    ("not-only-toxic", "The message is not only toxic but threatening.", TOXIC, "toxic", "flexible"),
    ("comma-breaks-negation", "No, it is toxic.", TOXIC, "toxic", "flexible"),
    ("not-toxic-without-complement", "Label: not toxic", SAFE, INVALID, "none"),
    ("non-toxic-without-complement", "Label: Non\u2013toxic", SAFE, INVALID, "none"),
    ("hyphenated-non-toxic-without-complement", "Label: non-toxic", SAFE, INVALID, "none"),
    ("neither-without-complement", "Label: neither toxic nor harmful", SAFE, INVALID, "none"),
    ("not-toxic-so-safe", "It is not toxic, so: safe.", SAFE, "safe", "flexible"),
    ("not-correct", "Verdict: the answer is not correct.", CORRECT, "incorrect", "flexible"),
    ("not-positive-no-complement", "The review is not positive.", SENTIMENT, INVALID, "none"),
    # --- a Label line that names no label
    ("label-line-unknown-label", "Label: harmful\nReason: it is toxic.", TOXIC, INVALID, "none"),
    ("label-line-unknown-ignores-text", "Classification: this one is hard\nI'd say toxic overall.", TOXIC, INVALID, "none"),
    ("earlier-label-line-names-label", "Label: toxic\nAnswer: because it insults people", TOXIC, "toxic", "label"),
    # --- two different labels
    ("echoed-template", "Label: toxic or non-toxic\nReason: one short sentence", TOXIC, INVALID, "ambiguous"),
    ("two-labels-free-text", "It looks toxic, though some would call it non-toxic.", TOXIC, INVALID, "ambiguous"),
    ("same-label-twice", "Toxic. Definitely toxic.", TOXIC, "toxic", "flexible"),
    ("last-label-line-decides", "Label: toxic\nHmm, wait.\nLabel: non-toxic", TOXIC, "non-toxic", "label"),
    # --- reasoning models
    ("think-then-label", THINK + "Label: non-toxic", TOXIC, "non-toxic", "label"),
    ("think-unclosed", "<think>It is toxic because", TOXIC, INVALID, "none"),
    ("harmony-label", harmony("The user says hi. Label: toxic? No.", "Label: non-toxic"), TOXIC, "non-toxic", "label"),
    ("harmony-decoded-label", "analysisRude words.assistantfinalLabel: toxic", TOXIC, "toxic", "label"),
    ("think-sentiment", "<think>It might be NEGATIVE.</think>The sentiment is Positive.", ["POSITIVE", "NEGATIVE"], "POSITIVE", "flexible"),
    # --- other label sets and word boundaries
    ("yes-no", "Answer: no", YES_NO, "no", "label"),
    ("yes-no-free", "Yes, the claim is supported.", YES_NO, "yes", "flexible"),
    ("multiword-label", "Overall:  very\n positive tone.", ["positive", "very positive"], "very positive", "flexible"),
    ("whole-words-only", "The review is positively glowing", ["positive"], INVALID, "none"),
    ("compound-is-not-label", "The comment is non-toxic.", ["toxic"], INVALID, "none"),
    ("nothing", "I am not sure.", TOXIC, INVALID, "none"),
]
# fmt: on


@pytest.mark.parametrize(
    ("response", "labels", "value", "method"),
    [case[1:] for case in LABEL_CASES],
    ids=[case[0] for case in LABEL_CASES],
)
def test_label_extraction(response: str, labels: list[str], value: str, method: str) -> None:
    found = parse_label(response, labels)
    assert (found.value, found.method) == (value, method)


def test_corpus_size() -> None:
    assert len(NUMBER_CASES) + len(LABEL_CASES) >= 80
    assert len({c[0] for c in NUMBER_CASES}) == len(NUMBER_CASES)
    assert len({c[0] for c in LABEL_CASES}) == len(LABEL_CASES)
