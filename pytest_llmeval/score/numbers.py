"""Numeric answers: canonical number strings, GSM8K-style extraction (strict `#### <n>`,
else the last number) and comparison by value.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from pytest_llmeval.score.extraction import Extraction, excerpt
from pytest_llmeval.score.reasoning import split_reasoning

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
            return Extraction(value, "strict", excerpt(answer, *match.span(1)))
    for match in reversed(list(_NUMBER_RE.finditer(answer))):
        value = normalize_number(match.group(0))
        if value is not None:
            return Extraction(value, "flexible", excerpt(answer, *match.span()))
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
