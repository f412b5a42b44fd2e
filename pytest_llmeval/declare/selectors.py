"""Which of an item's sampled candidates a task's selector picks (`Task(select=...)`).

Built-ins: `logprob` (highest mean token log-probability: the model's own confidence, the
usual cheap reranker) and `shortest` (fewest generated tokens, else characters). Ties go to
the lowest sample index, so a pick never depends on anything but the candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pytest_llmeval.declare.task import Candidate, TaskError

Selector = str | Callable[[Sequence[Candidate]], int]


class SelectorError(TaskError):
    """A selector could not pick (no log-probabilities, a bad return value)."""


def select_candidate(select: Selector, candidates: Sequence[Candidate]) -> int:
    """The index (into `candidates`) of the candidate `select` picks; raises SelectorError
    when it cannot pick."""
    if not candidates:
        raise SelectorError("no candidate to select from (every sample failed)")
    if select == "logprob":
        if any(c.mean_logprob is None for c in candidates):
            raise SelectorError(
                "select='logprob' needs token log-probabilities, which this backend does not "
                "give; use select='shortest' or a function"
            )
        best = max(c.mean_logprob for c in candidates if c.mean_logprob is not None)
        return next(i for i, c in enumerate(candidates) if c.mean_logprob == best)
    if select == "shortest":
        lengths = [c.tokens_out if c.tokens_out is not None else len(c.text) for c in candidates]
        return lengths.index(min(lengths))
    if isinstance(select, str):
        raise SelectorError(f"unknown selector {select!r}; use 'logprob', 'shortest' or a function")
    chosen = select(candidates)
    if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(candidates):
        raise SelectorError(
            f"selector {getattr(select, '__name__', select)!r} must return an index in "
            f"0..{len(candidates) - 1}, got {chosen!r}"
        )
    return chosen
