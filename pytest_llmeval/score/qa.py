"""Answer-value QA (WattBot style): a response read as (answer value, cited reference ids,
"is blank") and scored against a row's `answer_value` / `ref_ids` / `is_blank`.

The score has three components, each a metric of the task (`Score.components`):

- `value_accuracy` (every item, 1/0): a number within a relative tolerance (default 0.1%),
  a text value by normalised exact match, a blank truth only by a blank answer;
- `ref_overlap` (every item, 0..1): Jaccard overlap of the cited and the true reference ids
  (on a blank-truth question the blank answer counts as its one reference, `is_blank`);
- `na_recall` (blank-truth items only, 1/0; None elsewhere): whether the model said blank.

The WattBot composite is `0.75*value_accuracy + 0.15*ref_overlap + 0.10*na_recall`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.score.extraction import TargetError, excerpt
from pytest_llmeval.score.numbers import first_number, normalize_number, numbers_equal
from pytest_llmeval.score.reasoning import split_reasoning
from pytest_llmeval.score.scorers import Score
from pytest_llmeval.score.text import normalize_text

__all__ = ["BLANK", "QAAnswer", "jaccard", "parse_qa", "parse_refs", "qa", "qa_value"]

BLANK = "is_blank"
"""The answer value that means "the documents do not contain the answer"."""

# Whole-value spellings of "no answer" (after normalize_text).
_BLANK_WORDS = {
    "is_blank", "is blank", "blank", "none", "null", "n/a", "na", "unknown", "unanswerable",
    "no answer", "not answerable", "not available", "not found", "not stated", "not given",
    "not mentioned", "i don't know", "i do not know",
}  # fmt: skip
# Sentences that say so: "not in the documents", "the context does not say", "cannot be
# answered", "no information about ...".
_BLANK_PHRASE = re.compile(
    r"\b(?:(?:not|n't|never)\b.{0,40}\b(?:in|from|within)\s+the\s+(?:provided\s+|given\s+)?"
    r"(?:documents?|context|passages?|sources?|texts?)"
    r"|(?:documents?|context|passages?|sources?)\s+(?:do|does)(?:\s+not|n't)\s+"
    r"(?:say|state|mention|contain|give|provide|specify)"
    r"|cannot\s+be\s+(?:answered|determined|found)|can't\s+be\s+(?:answered|determined)"
    r"|no\s+information\s+(?:about|on|regarding))",
    re.IGNORECASE,
)
_ANSWER_LINE = re.compile(
    r"^[ \t*_#>-]*(?:the[ \t]+)?(?:final[ \t]+)?answer(?:[ _]value)?"
    r"(?:[ \t*_]*[:=]|[ \t]+is\b[ \t]*:?)[ \t*_]*(?P<value>.*?)[ \t*_.]*$",
    re.IGNORECASE | re.MULTILINE,
)
_REFS_LINE = re.compile(
    r"^[ \t*_#>-]*(?:references?|refs?|ref[ _]ids?|sources?|citations?|cited)[ \t*_]*[:=]"
    r"(?P<refs>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_PARENTHESES = re.compile(r"\([^)]*\)")  # "a, b (the second one)": a remark, not ids
_BRACKETS = re.compile(r"\[(.*?)\]")
# "450 MW (as of 2023)", "1,200 GPUs [doc3]": remarks and citations beside a value.
_REMARKS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_REF_SPLIT = re.compile(r"[,;\s]+")
_REF_STRIP = "[](){}'\"`*. "


@dataclass(frozen=True)
class QAAnswer:
    """A response read as an answer: its `value` (None when nothing was found; `BLANK` when
    the model said the documents do not contain it), the cited `ref_ids`, how it was read
    (`method`) and the excerpt it was read from (`span`)."""

    value: str | None
    ref_ids: tuple[str, ...]
    method: str
    span: str = ""

    @property
    def is_blank(self) -> bool:
        """Whether the model said the answer is not in the documents."""
        return self.value == BLANK


def is_blank_text(value: str) -> bool:
    """Whether an answer value says "no answer" (a word such as `is_blank`, `n/a`, `unknown`,
    or a sentence such as "not in the documents", "cannot be answered")."""
    text = normalize_text(value)
    return text in _BLANK_WORDS or _BLANK_PHRASE.search(value) is not None


def parse_refs(refs: Any) -> tuple[str, ...]:
    """Reference ids from a list or a string (`[a, b]`, `a; b`, `['a', 'b']`), casefolded,
    without brackets, quotes or duplicates, in order; `is_blank` is not an id."""
    if refs is None:
        return ()
    if isinstance(refs, (list, tuple)):
        items = [str(r) for r in refs]
    else:
        # "[a, b] (the ones I used)": only what the brackets hold, when there are brackets.
        text = _PARENTHESES.sub(" ", str(refs))
        bracketed = _BRACKETS.search(text)
        items = [bracketed.group(1) if bracketed else text]
    out: list[str] = []
    for item in items:
        for piece in _REF_SPLIT.split(item):
            ref = piece.strip(_REF_STRIP).casefold()
            if ref and ref not in (BLANK, "none", "n/a") and ref not in out:
                out.append(ref)
    return tuple(out)


def _from_json(answer: str) -> QAAnswer | None:
    match = _JSON_OBJECT.search(answer)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    value = next((data[k] for k in ("answer_value", "answer", "value") if k in data), None)
    refs = next((data[k] for k in ("ref_ids", "references", "refs", "ref_id") if k in data), None)
    blank = data.get("is_blank") in (True, "true", "True", 1)
    if value is None and refs is None and not blank:
        return None
    text = None if value is None else str(value).strip()
    if blank or (text is not None and is_blank_text(text)):
        text = BLANK
    span = excerpt(answer, *match.span(), context=False)
    return QAAnswer(text, parse_refs(refs), "json", span)


def parse_qa(response: str) -> QAAnswer:
    """Read a response as an answer value and cited reference ids. Reasoning is removed
    first; then, in order:

    - `json`: a JSON object with `answer_value` (or `answer`, `value`), `ref_ids` (or
      `references`, `refs`, `ref_id`) and optionally `is_blank`, anywhere in the response;
    - `lines`: an `Answer: <value>` line (also `Final answer:`, `The answer is 42.`,
      `answer_value =`, markdown bold around it) and a `References: [id, ...]` line (also
      `Refs:`, `Sources:`, ids separated by commas, semicolons or spaces, brackets and
      quotes optional; with brackets only what they hold, never a remark in parentheses);
    - `first-line`: no Answer line: the first non-empty line is the value (refs as above);
    - `none`: an empty response.

    A value that says "no answer" (`is_blank`, `n/a`, `unknown`, "not in the documents",
    "cannot be answered", ...; see `is_blank_text`) becomes `BLANK`.
    """
    _, answer = split_reasoning(response)
    found = _from_json(answer)
    if found is not None:
        return found
    refs_match = _REFS_LINE.search(answer)
    refs = parse_refs(refs_match.group("refs")) if refs_match else ()
    line = _ANSWER_LINE.search(answer)
    if line is not None:
        value, method, span = line.group("value").strip(), "lines", excerpt(answer, *line.span())
        if not value:  # "Answer:" with the value on the next line
            after = answer[line.end() : refs_match.start() if refs_match else None]
            value = next((x.strip() for x in after.splitlines() if x.strip()), "")
    else:
        rest = answer[: refs_match.start()] if refs_match else answer
        first = next((x.strip() for x in rest.splitlines() if x.strip()), "")
        if not first:
            # Only a blank-saying sentence or nothing at all.
            blank = is_blank_text(answer)
            return QAAnswer(BLANK if blank else None, refs, "first-line" if blank else "none")
        value, method, span = first, "first-line", first[:60]
    if not value:
        return QAAnswer(None, refs, "none", span)
    return QAAnswer(BLANK if is_blank_text(value) else value, refs, method, span)


def jaccard(cited: Iterable[str], true: Iterable[str]) -> float:
    """|cited ∩ true| / |cited ∪ true|; 1.0 when both are empty (nothing to cite, and nothing
    was cited: they agree)."""
    a, b = set(cited), set(true)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def _ref_overlap(found: QAAnswer, true_refs: Iterable[str], blank_truth: bool) -> float:
    """Jaccard of cited and true ids; on a blank-truth question the blank answer is its
    reference (WattBot cites `is_blank` there), so an answer that cites nothing but is not
    blank earns nothing, as a value with the wrong citations would."""
    if not blank_truth:
        return jaccard(found.ref_ids, true_refs)
    cited = {*found.ref_ids, *([BLANK] if found.is_blank else [])}
    return jaccard(cited, {*true_refs, BLANK})


COMPONENTS = ("value_accuracy", "ref_overlap", "na_recall")
"""The components every QA score carries (`na_recall` None on an answerable question)."""


def qa_value(value: str) -> str:
    """An answer value as compared: the canonical number when the whole value is one
    ("1,200" -> "1200", "$3.5" -> "3.5"), else, with remarks in parentheses or brackets
    dropped, the FIRST number in it ("12%", "3.5 MWh" -> "3.5", "450 MW (as of 2023)" ->
    "450", "5 kWh per day for 7 days" -> "5"), else the normalised text. The first, not the
    last: an answer line states its value first and adds context (a year, a duration) after."""
    whole = normalize_number(value)
    if whole is not None:
        return whole
    found = first_number(_REMARKS.sub(" ", value))
    return found if found is not None else normalize_text(value)


def _true_number(truth: str) -> str | None:
    """A true value as a canonical number when it is one ("1,200", "$3.5", "12%"), else None
    (a text value, compared as text)."""
    text = truth.strip()
    return normalize_number(text[:-1] if text.endswith("%") else text)


def _truth_blank(row: Mapping[str, Any], blank_field: str, value: Any) -> bool:
    flag = row.get(blank_field)
    if isinstance(flag, str):
        flag = flag.strip().casefold() in ("true", "1", "yes")
    if flag is None:
        return value is None or str(value).strip() == "" or is_blank_text(str(value))
    return bool(flag)


def qa(
    tolerance: float = 1e-3,
    value_field: str = "answer_value",
    refs_field: str = "ref_ids",
    blank_field: str = "is_blank",
) -> Callable[[str, str, Mapping[str, Any]], Score]:
    """A scorer for answer-value QA rows (`value_field`, `refs_field`, `blank_field`).

    The response is read by `parse_qa`. A true value that is a number ("1,200", "$3.5",
    "12%") is matched within the relative `tolerance` (default 0.1%: 1000 vs 1001 right, 1002
    wrong) against the answer read by `qa_value` (so "12%" and "1,200 GPUs" count); any other
    true value by normalised exact match (`normalize_text`). The row's `is_blank` (bool or
    "true"/"false"; when absent, a blank or "is_blank" answer value) says the documents hold
    no answer: the item is right only when the model said blank, and an answerable item
    answered blank is wrong. `Score.value` is `value_accuracy`; components as in the module
    docstring, with `ref_overlap` = `jaccard(cited, true)` on every item: 1.0 when neither
    side names a reference (a blank truth with no ref ids answered blank without citations),
    0.0 when only one does. `extracted` is the compared form of the parsed value (`is_blank`
    for a blank answer). Raises TargetError when an answerable row has no value.
    """
    if not tolerance >= 0:
        raise ValueError(f"qa(tolerance=...) must be >= 0, got {tolerance!r}")

    def score_qa(response: str, target: str, row: Mapping[str, Any]) -> Score:
        true_value = row.get(value_field, target)
        blank_truth = _truth_blank(row, blank_field, true_value)
        if not blank_truth and (true_value is None or str(true_value).strip() == ""):
            raise TargetError(f"QA row has no {value_field!r} and is not marked {blank_field}")
        reasoning, _ = split_reasoning(response)
        found = parse_qa(response)
        number = None if blank_truth else _true_number(str(true_value))
        extracted = found.value
        if found.value is not None and not found.is_blank:
            # Read as the truth's kind: "Finch-7B" is a name, not the number 7.
            extracted = qa_value(found.value) if number else normalize_text(found.value)
        if blank_truth:
            right = found.is_blank
        elif found.value is None or found.is_blank:
            right = False
        elif number is not None:
            right = numbers_equal(extracted, number, rel_tol=tolerance, abs_tol=0.0)
        else:
            right = extracted == normalize_text(str(true_value))
        accuracy = 1.0 if right else 0.0
        components: dict[str, float | None] = {
            "value_accuracy": accuracy,
            "ref_overlap": _ref_overlap(found, parse_refs(row.get(refs_field)), blank_truth),
            "na_recall": (1.0 if found.is_blank else 0.0) if blank_truth else None,
        }
        return Score(accuracy, extracted, found.method, found.span, reasoning, components)

    def applies(row: Mapping[str, Any]) -> dict[str, bool]:
        """Which components apply to `row` whatever the answer: `na_recall` only where the
        truth is blank. The run stores 0.0 for these (None for the others) on an item that
        errors after its row was read, so it counts as a miss only where it would count."""
        blank = _truth_blank(row, blank_field, row.get(value_field))
        return {"value_accuracy": True, "ref_overlap": True, "na_recall": blank}

    score_qa.__name__ = f"qa(tolerance={tolerance:g})"
    setattr(score_qa, "applies", applies)  # noqa: B010
    # The components it returns, so a task's gates and composites naming them are checked
    # when the task is declared (declare/own_metrics.py), not only when the run ends.
    setattr(score_qa, "components", list(COMPONENTS))  # noqa: B010
    return score_qa
