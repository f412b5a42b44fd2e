"""Free-text answers: normalisation, exact match and a 0..1 similarity of two texts."""

from __future__ import annotations

import string

from pytest_llmeval.score.reasoning import split_reasoning

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


def similarity(a: str, b: str) -> float | None:
    """Return the normalized Indel similarity of two texts after :func:`normalize_text`.

    ``rapidfuzz.fuzz.ratio / 100``: ``1 - indel_distance / (len(a) + len(b))``, i.e.
    ``2 * LCS / (len(a) + len(b))`` where LCS is the longest common subsequence of
    characters and the Indel distance counts insertions and deletions. 1.0 for equal texts,
    0.0 for texts with no character in common or one empty side. ``None`` when both are
    empty: there is nothing to compare, and two backends that both said nothing are not
    alike. Fast (bit-parallel LCS): about 1 ms for two 8 kB texts, where the former
    ``difflib.SequenceMatcher`` ratio took about 1 s (`benchmarks/similarity.py`). The texts
    are compared as given, so split off reasoning first if needed.
    """
    na, nb = normalize_text(a), normalize_text(b)
    if not na and not nb:
        return None
    # Imported here: only agreement runs compare texts, so plugin import stays without it.
    from rapidfuzz.fuzz import ratio

    return float(ratio(na, nb)) / 100.0
