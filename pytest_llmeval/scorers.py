"""Pure scoring functions for LLM evaluation responses.

Everything here is deterministic string processing with no I/O, so it can be
called from tests, report code or offline re-scoring alike. The typical flow is:
strip the model's reasoning with :func:`split_reasoning`, extract an answer
(:func:`extract_gsm8k`, :func:`parse_label`) and compare it with the target
(:func:`numbers_equal`, :func:`exact_match`, :func:`similarity`).
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = [
    "INVALID",
    "Extraction",
    "exact_match",
    "extract_gsm8k",
    "gsm8k_target",
    "normalize_number",
    "normalize_text",
    "numbers_equal",
    "parse_label",
    "similarity",
    "split_reasoning",
]

#: Value returned by :func:`parse_label` when no label could be found.
INVALID = "[invalid]"


@dataclass(frozen=True)
class Extraction:
    """An answer read out of a model response.

    ``value`` is the normalised answer (``None`` when nothing was extracted,
    except :func:`parse_label`, which uses :data:`INVALID`), ``method`` says how
    it was found (``"strict"``, ``"flexible"``, ``"label"``, ``"exact"`` or
    ``"none"``) and ``span`` is a short (<= 60 chars) excerpt of the response
    ending at the extracted value, for failure reports; ``""`` if none.
    """

    value: str | None
    method: str
    span: str


_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
# Harmony (gpt-oss) message: the header may carry extra tokens such as
# "to=functions.x <|constrain|>json" between the channel name and <|message|>.
_HARMONY_MESSAGE = re.compile(
    r"<\|channel\|>(\w+)(?:.*?)<\|message\|>(.*?)"
    r"(?=<\|end\|>|<\|return\|>|<\|call\|>|<\|start\|>|<\|channel\|>|\Z)",
    re.DOTALL,
)
# When special tokens are skipped while decoding, harmony output collapses to
# "analysis<reasoning>assistantfinal<answer>".
_DECODED_FINAL = "assistantfinal"


def _join_reasoning(parts: Sequence[str]) -> str:
    return "\n".join(p.strip() for p in parts if p.strip())


def _split_harmony(text: str) -> tuple[str, str] | None:
    messages = _HARMONY_MESSAGE.findall(text)
    if messages:
        finals = [body for channel, body in messages if channel == "final"]
        reasoning = _join_reasoning([b for c, b in messages if c != "final"])
        # No final channel means generation stopped while still analysing.
        return reasoning, finals[-1].strip() if finals else ""
    if _DECODED_FINAL in text:
        head, _, answer = text.rpartition(_DECODED_FINAL)
        head = head.strip()
        if head.startswith("analysis"):
            head = head[len("analysis") :]
        return head.strip(), answer.strip()
    return None


def split_reasoning(text: str) -> tuple[str, str]:
    """Split a response into ``(reasoning, answer)``; call before scoring.

    Understands ``<think>...</think>`` blocks (several are joined), an
    unclosed ``<think>`` (everything after it is reasoning: the model ran out
    of tokens), a lone ``</think>`` (the opening tag was in the prompt, so
    everything before it is reasoning) and gpt-oss harmony channels, both with
    special tokens and in the decoded ``analysis...assistantfinal...`` form.
    Text without any markers is returned as ``("", text.strip())``.
    """
    harmony = _split_harmony(text)
    if harmony is not None:
        return harmony

    parts: list[str] = []
    rest = text
    first_close = rest.find(_THINK_CLOSE)
    first_open = rest.find(_THINK_OPEN)
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        parts.append(rest[:first_close])
        rest = rest[first_close + len(_THINK_CLOSE) :]
    parts.extend(_THINK_BLOCK.findall(rest))
    rest = _THINK_BLOCK.sub("", rest)
    unclosed = rest.find(_THINK_OPEN)
    if unclosed != -1:
        parts.append(rest[unclosed + len(_THINK_OPEN) :])
        rest = rest[:unclosed]
    return _join_reasoning(parts), rest.strip()


_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


def normalize_number(text: str) -> str | None:
    """Return ``text`` as a canonical number string, or ``None`` if it isn't one.

    Commas, ``$``, surrounding whitespace and a trailing ``.`` are ignored;
    integral values lose their decimals (``"18.00"`` -> ``"18"``) and
    trailing zeros go (``"0.50"`` -> ``"0.5"``), so equal numbers compare
    equal as strings.
    """
    cleaned = text.replace(",", "").replace("$", "").strip()
    if cleaned.endswith("."):
        cleaned = cleaned[:-1].rstrip()
    if not _PLAIN_NUMBER.fullmatch(cleaned):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the regex already guards this
        return None
    if value == value.to_integral_value():
        return str(int(value))
    # format "f" avoids the exponent notation Decimal.normalize() can produce.
    return format(value.normalize(), "f")


# Thousands groups only when well-formed, so "1,2,3" reads as three numbers
# rather than "123". A leading "-" counts only when it isn't a hyphen/minus
# between two words or numbers ("10-20" is not -20).
_NUMBER = (
    r"(?:(?<![\w$])-)?\$?"
    r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)
_NUMBER_RE = re.compile(_NUMBER)
_STRICT_RE = re.compile(r"####\s*(" + _NUMBER + ")")
_SPAN_CONTEXT = 40
_SPAN_MAX = 56  # plus the "... " prefix keeps spans within 60 characters


def _span(text: str, start: int, end: int, *, context: bool = True) -> str:
    # With context, show up to 40 characters leading up to the value so a
    # failure report makes sense on its own ("... = 32").
    begin = max(0, min(start, end - _SPAN_CONTEXT)) if context else start
    begin = max(begin, end - _SPAN_MAX)
    excerpt = " ".join(text[begin:end].split())
    cut = begin > (0 if context else start)
    return f"... {excerpt}" if cut else excerpt


def extract_gsm8k(response: str) -> Extraction:
    """Extract the final numeric answer from a GSM8K-style response.

    Reasoning is removed first. The last ``#### <number>`` wins (method
    ``"strict"``); failing that, the last number in the answer text (method
    ``"flexible"``); failing that ``Extraction(None, "none", "")``. The value
    is normalised with :func:`normalize_number`.
    """
    _, answer = split_reasoning(response)
    for match in reversed(list(_STRICT_RE.finditer(answer))):
        value = normalize_number(match.group(1))
        if value is not None:
            return Extraction(value, "strict", _span(answer, *match.span(1)))
    for match in reversed(list(_NUMBER_RE.finditer(answer))):
        value = normalize_number(match.group(0))
        if value is not None:
            return Extraction(value, "flexible", _span(answer, *match.span()))
    return Extraction(None, "none", "")


def gsm8k_target(answer_field: str) -> str:
    """Return the normalised number after ``####`` in a GSM8K ``answer`` field.

    Raises ``ValueError`` when the field has no parseable ``#### <number>``.
    """
    _, marker, tail = answer_field.rpartition("####")
    value = normalize_number(tail) if marker else None
    if value is None:
        excerpt = " ".join(answer_field[-60:].split())
        raise ValueError(f"GSM8K answer field has no '#### <number>' final line: {excerpt!r}")
    return value


def numbers_equal(
    a: str | None, b: str | None, rel_tol: float = 0.0, abs_tol: float = 1e-9
) -> bool:
    """Whether ``a`` and ``b`` are numbers equal within tolerance.

    Both are parsed with :func:`normalize_number`; ``None`` or non-numbers give
    ``False``. Tolerances follow :func:`math.isclose`, but the comparison uses
    ``Decimal`` so large integers that differ by one are not equal.
    """
    if rel_tol < 0 or abs_tol < 0:
        raise ValueError("tolerances must be non-negative")
    if a is None or b is None:
        return False
    na, nb = normalize_number(a), normalize_number(b)
    if na is None or nb is None:
        return False
    da, db = Decimal(na), Decimal(nb)
    allowed = max(Decimal(repr(rel_tol)) * max(abs(da), abs(db)), Decimal(repr(abs_tol)))
    return abs(da - db) <= allowed


# Sign, currency and percent symbols are kept: stripping them changes meaning.
# "*" and "_" are included so markdown emphasis ("**Paris**") disappears.
_STRIP_CHARS = (
    "".join(c for c in string.punctuation if c not in "+-$%#@&")
    + "\u201c\u201d\u2018\u2019\u00ab\u00bb"
    + string.whitespace
)


def normalize_text(text: str) -> str:
    """Casefold, collapse whitespace and strip surrounding punctuation/quotes.

    Use it to compare short free-text answers; inner punctuation is kept.
    """
    return " ".join(text.casefold().split()).strip(_STRIP_CHARS)


def exact_match(response: str, target: str) -> bool:
    """Whether the response's answer (reasoning removed) equals ``target``.

    Both sides go through :func:`normalize_text` first.
    """
    _, answer = split_reasoning(response)
    return normalize_text(answer) == normalize_text(target)


_EXPLICIT_LINE = re.compile(
    r"^[ \t*_#>-]*(?:final\s+)?(?:label|answer|classification)[\s*_]*[:=]"
    r"[\s*_\"'`\[(]*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def _label_pattern(labels: Sequence[str]) -> tuple[re.Pattern[str], dict[str, str]]:
    unique = list(dict.fromkeys(label for label in labels if label.strip()))
    # Longest first so "non-toxic" is tried before "toxic" at each position.
    ordered = sorted(enumerate(unique), key=lambda item: -len(item[1]))
    groups = {f"l{i}": label for i, label in ordered}
    alternatives = "|".join(
        f"(?P<l{i}>" + r"\s+".join(re.escape(w) for w in label.split()) + ")"
        for i, label in ordered
    )
    # "-" counts as part of a word so "toxic" never matches inside "non-toxic".
    pattern = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)
    return pattern, groups


def parse_label(response: str, labels: Sequence[str]) -> Extraction:
    """Find which of ``labels`` a classification response chose.

    Reasoning is removed first; matching is case-insensitive and on whole
    words. In order of preference: the whole answer is a label (method
    ``"exact"``); the last ``label:``/``answer:``/``classification:`` line
    that starts with a label (``"label"``); the earliest label anywhere in the
    answer, longest label first at each position (``"flexible"``). The value
    is spelled as in ``labels``; if nothing matches it is :data:`INVALID`
    with method ``"none"``. Single-letter labels can match ordinary words in
    free text ("a"), so prefer prompting for an explicit ``Answer:`` line.
    """
    _, answer = split_reasoning(response)
    if not any(label.strip() for label in labels):
        return Extraction(INVALID, "none", "")
    normalised = normalize_text(answer)
    for label in labels:
        if label.strip() and normalize_text(label) == normalised:
            return Extraction(label, "exact", _span(answer, 0, len(answer)))
    pattern, groups = _label_pattern(labels)
    for line in reversed(list(_EXPLICIT_LINE.finditer(answer))):
        offset = line.start("rest")
        found = pattern.match(line.group("rest"))
        if found is not None and found.lastgroup is not None:
            span = _span(answer, line.start(), offset + found.end(), context=False)
            return Extraction(groups[found.lastgroup], "label", span)
    found = pattern.search(answer)
    if found is not None and found.lastgroup is not None:
        span = _span(answer, found.start(), found.end())
        return Extraction(groups[found.lastgroup], "flexible", span)
    return Extraction(INVALID, "none", "")


def similarity(a: str, b: str) -> float:
    """Return a 0..1 similarity of two texts after :func:`normalize_text`.

    Uses ``difflib.SequenceMatcher.ratio``; two empty texts score 1.0. The
    texts are compared as given, so split off reasoning first if needed.
    """
    na, nb = normalize_text(a), normalize_text(b)
    if not na and not nb:
        return 1.0
    # autojunk would discard common characters in texts over 200 chars and
    # make long, nearly identical answers score far too low.
    return difflib.SequenceMatcher(None, na, nb, autojunk=False).ratio()
