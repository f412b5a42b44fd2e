"""Numeric answers: reading a number the way a person would (signs, grouping, fractions,
scientific notation, markdown and LaTeX around it), GSM8K-style extraction (the first
`#### <n>`, else the last `\\boxed{n}`, else the last number) and comparison by value.

The rules are documented for users in docs/scoring.md; tests/test_extraction_corpus.py holds
one realistic response per rule.
"""

from __future__ import annotations

import re
from fractions import Fraction

from pytest_llmeval.score.extraction import Extraction, TargetError, excerpt
from pytest_llmeval.score.reasoning import split_reasoning

# Minus in every form models write: hyphen-minus, U+2212 minus sign, en dash used as a minus.
_SIGN = "[+\\-\u2212\u2013]"
# A sign counts only when it is not a hyphen/dash between two words or numbers: "10-20" and
# "10–20" are ranges, "x-5" is not -5.
_SIGN_ALLOWED = r"(?<![\w)\]}.,])"
# Thousands separators. "{,}" and "\," are LaTeX's comma and thin space. A plain space groups
# only inside an answer (after ####, in \boxed{}), where one number is expected: in free text
# "2 100 packs" is two numbers.
_GROUP_TEXT = r"(?:,|\{,\}|\\,|[\u2009\u202f\u00a0])"
_GROUP_ANSWER = r"(?:,|\{,\}|\\,|[\u2009\u202f\u00a0 ])"
_EXPONENT = r"(?:[eE](?P<exp>[+\-\u2212]?[0-9]{1,4}))?"
_TIMES_TEN = (
    r"(?:\s*(?:\u00d7|\\times|\\cdot|x|\*)\s*10\s*\^"
    r"\s*\{?\s*(?P<exp10>[+\-\u2212]?[0-9]{1,4})\s*\}?)?"
)
_FRAC = r"\\[dt]?frac\s*\{\s*(?P<fnum>[0-9]+)\s*\}\s*\{\s*(?P<fden>[0-9]+)\s*\}"
_MAX_EXPONENT = 1000  # 1e400000 would take memory and time to expand; no answer is that big


def _token(group: str, sign_space: str) -> str:
    # The digit run is deliberately broad ("1,0000", "1.2.3", "12/25/2020" are one run each)
    # and validated afterwards, so a malformed number is never read as one of its pieces.
    run = rf"(?:[0-9]+(?:(?:{group}|\.)[0-9]+)*|(?<![0-9])\.[0-9]+)"
    return (
        rf"(?P<cur1>\\?\$\s?)?(?:{_SIGN_ALLOWED}(?P<sign>{_SIGN}){sign_space})?(?P<cur2>\\?\$)?"
        rf"(?:{_FRAC}|(?P<run>{run}){_EXPONENT}{_TIMES_TEN}(?P<den>(?:/[0-9]+)*))"
    )


_NUMBER_RE = re.compile(_token(_GROUP_TEXT, ""))
_ANSWER_NUMBER = _token(_GROUP_ANSWER, r"[ \t]*")
# What may sit between "####" (or "\boxed{") and the number: markdown emphasis and code,
# LaTeX math delimiters and text commands, an "Answer:" label.
_WRAPPERS = (
    r"(?:[ \t]|[*_`~{]|\\?\$|\\[(\[]|\\(?:boxed|fbox|textbf|mathbf|text|mathrm)\s*\{"
    r"|(?i:(?:final\s+)?answer\s*(?:is\s*)?:))*"
)
_STRICT_RE = re.compile(r"####" + _WRAPPERS + _ANSWER_NUMBER)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{" + _WRAPPERS + _ANSWER_NUMBER)
_WHOLE_RE = re.compile(r"\s*" + _ANSWER_NUMBER + r"\s*\.?\s*")
# "#### 1. Count the eggs" is a markdown heading of a numbered step, not an answer (unless it
# is the last line: see extract_gsm8k).
_HEADING_TAIL = re.compile(r"[ \t]*[.):][ \t]*[^\W\d_]")
_GROUP_SPLIT = re.compile(r"(\{,\}|\\,|[,\u2009\u202f\u00a0 .])")


def _run_value(run: str) -> Fraction | None:
    """The value of a digit run such as "1,234.5", or None when its grouping is malformed."""
    pieces = _GROUP_SPLIT.split(run)
    digits, seps = pieces[0::2], pieces[1::2]
    if seps.count(".") > 1 or ("." in seps and seps[-1] != "."):
        return None  # "1.234.567", "1.234,5": another locale's convention; not guessed
    integer_seps = seps[:-1] if seps and seps[-1] == "." else seps
    integer_groups = digits[: len(integer_seps) + 1]
    if integer_seps:
        comma = {s in (",", "{,}") for s in integer_seps}
        if len(comma) > 1 or not 1 <= len(integer_groups[0]) <= 3:
            return None
        if any(len(group) != 3 for group in integer_groups[1:]):
            return None  # "1,0000", "1,2,3", "3,5": not thousands groups
    text = "".join(integer_groups)
    if len(digits) > len(integer_groups):
        text += "." + digits[-1]
    return Fraction(text)


def _exponent(text: str | None) -> int:
    return int(text.replace("\u2212", "-")) if text else 0


def _match_value(match: re.Match[str]) -> Fraction | None:
    """The value of a number token, or None when the token is malformed."""
    if match.group("fnum") is not None:
        numerator, denominator = int(match.group("fnum")), int(match.group("fden"))
        if not denominator:
            return None
        value = Fraction(numerator, denominator)
    else:
        run = _run_value(match.group("run"))
        exponent = _exponent(match.group("exp")) + _exponent(match.group("exp10"))
        denominators = [int(d) for d in match.group("den").split("/")[1:]]
        # "12/25/2020" is a date and "3/0" no number.
        if run is None or abs(exponent) > _MAX_EXPONENT or len(denominators) > 1:
            return None
        if denominators == [0]:
            return None
        value = run * Fraction(10) ** exponent / (denominators[0] if denominators else 1)
    sign = match.group("sign")
    return -value if sign is not None and sign != "+" else value


def canonical(value: Fraction) -> str:
    """A number as its canonical string: an integer ("18"), a finite decimal without trailing
    zeros ("0.75") or, when the decimal would not end, a reduced fraction ("1/3")."""
    if value.denominator == 1:
        return str(value.numerator)
    rest = value.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    scaled = abs(value.numerator * 10**digits // value.denominator)
    whole, fraction = divmod(scaled, 10**digits)
    sign = "-" if value < 0 else ""
    return f"{sign}{whole}.{fraction:0{digits}d}"


def parse_number(text: str) -> Fraction | None:
    """The value of ``text`` when the whole of it is one number, else ``None``.

    Accepts what :func:`extract_gsm8k` reads after ``####``: a sign (``-``, ``−``, ``–``,
    ``+``, also ``- 5``), ``$`` before or after the sign, thousands groups of exactly three
    digits (comma, space, thin space, LaTeX ``{,}``), decimals, ``a/b``, ``\\frac{a}{b}``,
    ``1e3`` and ``1.2 \\times 10^{3}``, and a trailing ``.``. ``"5%"``, ``"1,0000"`` and
    ``"12 apples"`` are not numbers.
    """
    match = _WHOLE_RE.fullmatch(text)
    return None if match is None else _match_value(match)


def normalize_number(text: str) -> str | None:
    """Return ``text`` as a canonical number string, or ``None`` if it isn't one.

    See :func:`parse_number` for what counts as a number and :func:`canonical` for the
    result, so equal numbers compare equal as strings (``"18.00"`` -> ``"18"``,
    ``"3/4"`` -> ``"0.75"``, ``"−$1,000"`` -> ``"-1000"``).
    """
    value = parse_number(text)
    return None if value is None else canonical(value)


def extract_gsm8k(response: str) -> Extraction:
    """Extract the final numeric answer from a GSM8K-style response.

    Reasoning is removed first. In order: the first ``#### <number>`` (method ``"strict"``,
    as lm-evaluation-harness's strict match: a model that goes on to invent the next
    question writes its own ``####`` after the answer); the last ``\\boxed{<number>}``
    (``"boxed"``); the last number in the answer (``"flexible"``). A malformed number where
    the answer is read ("1,0000") gives ``Extraction(None, "none", span)`` rather than a
    piece of it; no number at all gives ``Extraction(None, "none", "")``. The value is
    canonical (:func:`canonical`).
    """
    _, answer = split_reasoning(response)
    # "#### 1. Count the eggs" above more text is a numbered heading, but "#### 18. She has 3
    # left." on the last line is the answer with a closing remark: a heading-like marker
    # counts only on the answer's last line.
    for match in _STRICT_RE.finditer(answer):
        value = _match_value(match)
        if value is None:
            continue
        last_line = not answer[match.end() :].partition("\n")[2].strip()
        if last_line or not _HEADING_TAIL.match(answer, match.end()):
            return Extraction(canonical(value), "strict", excerpt(answer, *match.span()))
    for match in reversed(list(_BOXED_RE.finditer(answer))):
        value = _match_value(match)
        if value is not None:
            return Extraction(canonical(value), "boxed", excerpt(answer, *match.span()))
    last = None
    for last in _NUMBER_RE.finditer(answer):  # noqa: B007 - the loop finds the last match
        pass
    if last is None:
        return Extraction(None, "none", "")
    value = _match_value(last)
    span = excerpt(answer, *last.span())
    if value is None:
        return Extraction(None, "none", span)
    return Extraction(canonical(value), "flexible", span)


def first_number(text: str) -> str | None:
    """The first number in `text` as a canonical string ("5 kWh per day for 7 days" -> "5"),
    or None when there is none or the first one is malformed ("1,0000 GPUs")."""
    match = _NUMBER_RE.search(text)
    value = None if match is None else _match_value(match)
    return None if value is None else canonical(value)


def gsm8k_target(answer_field: str) -> str:
    """Return the normalised number after ``####`` in a GSM8K ``answer`` field.

    Raises :class:`TargetError` (a ``ValueError``) when the field has no parseable
    ``#### <number>``.
    """
    _, marker, tail = answer_field.rpartition("####")
    value = normalize_number(tail) if marker else None
    if value is None:
        shown = " ".join(answer_field[-60:].split())
        raise TargetError(f"GSM8K answer field has no '#### <number>' final line: {shown!r}")
    return value


def numbers_equal(
    a: str | None, b: str | None, rel_tol: float = 0.0, abs_tol: float = 1e-9
) -> bool:
    """Whether ``a`` and ``b`` are numbers equal within tolerance.

    Both are read with :func:`parse_number` (so ``"3/4"`` equals ``"0.75"``); ``None`` or
    non-numbers give ``False``. Tolerances follow :func:`math.isclose`, but the comparison
    is exact (fractions), so large integers that differ by one are not equal.
    """
    if rel_tol < 0 or abs_tol < 0:
        raise ValueError("tolerances must be non-negative")
    if a is None or b is None:
        return False
    va, vb = parse_number(a), parse_number(b)
    if va is None or vb is None:
        return False
    allowed = max(Fraction(repr(rel_tol)) * max(abs(va), abs(vb)), Fraction(repr(abs_tol)))
    return abs(va - vb) <= allowed
