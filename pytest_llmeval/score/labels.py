"""Classification answers: which of a task's labels a response chose, or `INVALID`.

A label is matched case-insensitively, as a whole word, in any spelling of its word breaks
("non-toxic", "non toxic", "nontoxic", "Non–toxic"); a negated mention ("not toxic",
"neither toxic nor ...") is never read as the label it negates. The rules are documented
for users in docs/scoring.md; tests/test_extraction_corpus.py holds one response per rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from pytest_llmeval.score.extraction import Extraction, TargetError, excerpt
from pytest_llmeval.score.reasoning import split_reasoning
from pytest_llmeval.score.text import normalize_text

#: Value returned by :func:`parse_label` when no label could be found.
INVALID = "[invalid]"

# Inside a label any word break matches any other, or none: space, underscore, hyphen,
# non-breaking hyphen, figure/en/em dash, horizontal bar, minus sign.
_BREAK = "\\s_\\-\u2010-\u2015\u2212"
# Hyphens join words into a compound, so "anti-toxic" is no mention of "toxic"; a dash
# next to a word is punctuation ("toxic — it insults") and does not block a match.
_JOINED = "\\w\\-\u2010\u2011"
# Prefixes that make a label's complement within the set: "non-toxic" for "toxic",
# "unsafe" for "safe", "incorrect" for "correct".
_COMPLEMENT_PREFIXES = ("non", "not", "no", "un", "in", "im", "il", "ir", "dis")

_EXPLICIT_LINE = re.compile(
    r"^[ \t*_#>-]*(?:final\s+)?(?:label|answer|classification)[\s*_]*[:=]"
    r"[\s*_\"'`\[(]*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)

# A negation right before a mention: "no"/"non"/"nothing"/"none" directly ("no toxic
# content", "non toxic", "Non–toxic"), "not"/"n't"/"never"/"neither"/"nor"/"without"/
# "cannot" up to three words before it ("not at all toxic", "does not contain any toxic").
# Punctuation ends a negation's reach ("No, it is toxic"); so do words that turn it
# around ("not only toxic", "not sure ... toxic").
_TURNING = (
    "but|only|just|sure|because|though|although|however|whether|if|yet|also|merely|simply"
    "|certain|clear"
)
_WORD = rf"(?!(?:{_TURNING})\b)[^\W\d_]+(?:['\u2019][^\W\d_]+)?"
_GAP = "(?:\\s+|\\s*[\u2012-\u2015\u2212]\\s*)"
_NEGATION = re.compile(
    rf"(?:\b(?:no|non|nothing|none)"
    rf"|(?:\b(?:not|never|neither|nor|without|cannot)|n['\u2019]t)(?:\s+{_WORD}){{0,3}})"
    rf"{_GAP}$",
    re.IGNORECASE,
)
_NEGATION_REACH = 80  # characters before a mention searched for its negation


@dataclass(frozen=True)
class _Mention:
    """A label named in the text: `value` is what it says (None: a negation naming no label)."""

    value: str | None
    start: int
    end: int


def _words(label: str) -> list[str]:
    return [word for word in re.split(f"[{_BREAK}]+", label.strip()) if word]


def _key(label: str) -> str:
    """Spellings of one label share a key: casefolded, without word breaks."""
    return "".join(_words(label)).casefold()


class LabelSet:
    """A task's labels, compiled once: parse a response, check a target."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(dict.fromkeys(label for label in labels if label.strip()))
        by_key: dict[str, str] = {}
        for label in self.labels:
            if not _words(label):
                raise ValueError(f"label {label!r} is only separators")
            other = by_key.setdefault(_key(label), label)
            if other != label:
                raise ValueError(f"labels {other!r} and {label!r} are one label spelled twice")
        self._complement = _complements(self.labels)
        # Longest first, so that "non-toxic" is tried before "toxic" at each position.
        ordered = sorted(enumerate(self.labels), key=lambda item: -len(item[1]))
        self._groups = {f"l{i}": label for i, label in ordered}
        alternatives = "|".join(
            f"(?P<l{i}>" + f"[{_BREAK}]*".join(map(re.escape, _words(label))) + ")"
            for i, label in ordered
        )
        self._pattern = re.compile(
            rf"(?<![{_JOINED}])(?:{alternatives})(?![{_JOINED}])", re.IGNORECASE
        )

    def label_of(self, text: str) -> str | None:
        """The label `text` is a spelling of (``"Non toxic"`` -> ``"non-toxic"``), or None."""
        found = self._pattern.fullmatch(normalize_text(text)) if self.labels else None
        return None if found is None or found.lastgroup is None else self._groups[found.lastgroup]

    def target(self, target: str) -> str:
        """The label a target names; raises TargetError when it names none."""
        found = self.label_of(target)
        if found is None:
            raise TargetError(f"target {target!r} is not one of the labels {list(self.labels)}")
        return found

    def parse(self, response: str) -> Extraction:
        """Which label a response chose; see :func:`parse_label`."""
        _, answer = split_reasoning(response)
        if not self.labels:
            return Extraction(INVALID, "none", "")
        exact = self.label_of(answer)
        if exact is not None:
            return Extraction(exact, "exact", excerpt(answer, 0, len(answer)))
        lines = list(_EXPLICIT_LINE.finditer(answer))
        for line in reversed(lines):
            mentions = self._mentions(answer, line.start("rest"), line.end("rest"))
            if mentions:
                return _decide(answer, mentions, "label", line.start())
        if lines:
            line = lines[-1]
            return Extraction(
                INVALID, "none", excerpt(answer, line.start(), line.end(), context=False)
            )
        mentions = self._mentions(answer, 0, len(answer))
        return _decide(answer, mentions, "flexible", None)

    def _mentions(self, text: str, start: int, end: int) -> list[_Mention]:
        mentions = []
        for found in self._pattern.finditer(text, start, end):
            assert found.lastgroup is not None
            label = self._groups[found.lastgroup]
            before = text[max(0, found.start() - _NEGATION_REACH) : found.start()]
            value = self._complement.get(label) if _NEGATION.search(before) else label
            mentions.append(_Mention(value, found.start(), found.end()))
        return mentions


def _complements(labels: Sequence[str]) -> dict[str, str]:
    """Each label's negation within the set, where the set has exactly one."""
    pairs: dict[str, list[str]] = {}
    for a in labels:
        for b in labels:
            if any(_key(b) == prefix + _key(a) for prefix in _COMPLEMENT_PREFIXES):
                pairs.setdefault(a, []).append(b)
                pairs.setdefault(b, []).append(a)
    return {label: found[0] for label, found in pairs.items() if len(set(found)) == 1}


def _decide(text: str, mentions: list[_Mention], method: str, line: int | None) -> Extraction:
    """One label named (perhaps several times): that label; two: ambiguous; none: invalid."""
    named = [m for m in mentions if m.value is not None]
    values = list(dict.fromkeys(m.value for m in named))
    last = mentions[-1] if mentions else None
    if len(values) > 1:
        second = next(m for m in named if m.value == values[1])
        start = named[0].start if line is None else line
        return Extraction(INVALID, "ambiguous", excerpt(text, start, second.end))
    if values:
        return Extraction(values[0], method, _span(text, line, named[-1]))
    return Extraction(INVALID, "none", "" if last is None else _span(text, line, last))


def _span(text: str, line: int | None, mention: _Mention) -> str:
    if line is not None:
        return excerpt(text, line, mention.end, context=False)
    return excerpt(text, mention.start, mention.end)


@lru_cache(maxsize=64)
def _label_set(labels: tuple[str, ...]) -> LabelSet:
    return LabelSet(labels)


def parse_label(response: str, labels: Sequence[str]) -> Extraction:
    """Find which of ``labels`` a classification response chose.

    Reasoning is removed first. Labels match case-insensitively, as whole words, in any
    spelling of their word breaks (space, hyphen, dash, underscore, none). A negated mention
    ("not toxic", "isn't toxic", "neither toxic nor ...", "Non–toxic") reads as the set's
    complement label ("non-toxic") when the set has one, else as no label. In order:

    - the whole answer is a label: method ``"exact"``;
    - else the last ``Label:``/``Answer:``/``Classification:`` line that names a label
      decides (``"label"``); when there are such lines and none names a label, the answer
      is :data:`INVALID` (``"none"``);
    - else the labels named anywhere in the answer (``"flexible"``).

    A line or answer that names two different labels is :data:`INVALID` with method
    ``"ambiguous"``; one that names none is :data:`INVALID` with method ``"none"``. The value
    is spelled as in ``labels``.
    """
    return _label_set(tuple(labels)).parse(response)
