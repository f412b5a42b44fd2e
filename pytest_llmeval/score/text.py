"""Free-text answers: normalisation, exact match and a 0..1 similarity of two texts."""

from __future__ import annotations

import difflib
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
