"""What an extractor read out of a response, and the excerpt shown when an item misses.

Shared by the number and label extractors; pure string processing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Extraction:
    """An answer read out of a model response.

    ``value`` is the normalised answer (``None`` when nothing was extracted,
    except :func:`parse_label`, which uses :data:`INVALID`), ``method`` says how
    it was found (numbers: ``"strict"`` from a ``####`` line, ``"boxed"``,
    ``"flexible"``; labels: ``"exact"``, ``"label"`` from a ``Label:`` line,
    ``"flexible"``; ``"ambiguous"`` for two different labels, ``"none"`` for no
    answer) and ``span`` is a short (<= 60 chars) excerpt of the response
    ending at the extracted value, for failure reports; ``""`` if none.
    """

    value: str | None
    method: str
    span: str


_SPAN_CONTEXT = 40
_SPAN_MAX = 56  # plus the "... " prefix keeps spans within 60 characters


def excerpt(text: str, start: int, end: int, *, context: bool = True) -> str:
    """The part of `text` ending at `end` (at most 60 characters) that a miss message shows.

    With `context`, up to 40 characters before `start` are kept too, so the excerpt makes
    sense on its own ("... = 32"); a cut start is marked with "... ".
    """
    begin = max(0, min(start, end - _SPAN_CONTEXT)) if context else start
    begin = max(begin, end - _SPAN_MAX)
    shown = " ".join(text[begin:end].split())
    cut = begin > (0 if context else start)
    return f"... {shown}" if cut else shown


class TargetError(ValueError):
    """A task's target cannot be scored (a `numeric` target that is no number, a `label()`
    target outside the label set): the task is misconfigured, so every item is an error."""
