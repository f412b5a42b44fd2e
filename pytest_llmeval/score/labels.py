"""Classification answers: which of a task's labels a response chose, or `INVALID`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pytest_llmeval.score.extraction import Extraction, excerpt
from pytest_llmeval.score.reasoning import split_reasoning
from pytest_llmeval.score.text import normalize_text

#: Value returned by :func:`parse_label` when no label could be found.
INVALID = "[invalid]"


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
            return Extraction(label, "exact", excerpt(answer, 0, len(answer)))
    pattern, groups = _label_pattern(labels)
    for line in reversed(list(_EXPLICIT_LINE.finditer(answer))):
        offset = line.start("rest")
        found = pattern.match(line.group("rest"))
        if found is not None and found.lastgroup is not None:
            span = excerpt(answer, line.start(), offset + found.end(), context=False)
            return Extraction(groups[found.lastgroup], "label", span)
    found = pattern.search(answer)
    if found is not None and found.lastgroup is not None:
        span = excerpt(answer, found.start(), found.end())
        return Extraction(groups[found.lastgroup], "flexible", span)
    return Extraction(INVALID, "none", "")
