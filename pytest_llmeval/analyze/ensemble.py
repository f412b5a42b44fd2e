"""Ensembles: one item's answer chosen from the records several runs (or arms) left behind.

Pure functions over `ItemRecord`s, no pytest and no model: `pytest-llmeval ensemble` builds
a new run from them (`pytest_llmeval/cli/ensemble.py`). The voters of an item are its records
in the order the members were given; that order breaks every tie.

- `majority`: the most frequent extracted answer (compared as the scorer wrote them); an
  unparsed answer (None or `[invalid]`) or an errored record (no score) does not vote; a tie
  goes to the answer whose first vote came from the earliest voter.
- `first-non-blank`: the first voter with a parsed answer.
- `confidence`: the voter with a parsed answer and the highest confidence (`confidence_of`);
  voters without a confidence do not compete; when none of an item's answering voters has
  one, `first-non-blank` decides that item (the choice says so).

The ensemble's verdict is the chosen voter's: its answer's score and correctness. When no
voter gave an answer, the earliest voter with a score is followed (an unparsed answer is
wrong), and the earliest voter only when every voter errored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.analyze.sampling import majority
from pytest_llmeval.score.labels import INVALID

STRATEGIES = ("majority", "first-non-blank", "confidence")
"""The ways `choose` picks a voter, by the names the command line takes."""


@dataclass(frozen=True)
class Choice:
    """The voter an item's ensemble answer follows, and how it was reached."""

    record: ItemRecord
    """The chosen voter's record (its answer, score and correctness become the ensemble's)."""
    votes: int
    """Voters that gave the chosen answer (0 when no voter gave an answer)."""
    answered: int
    """Voters that gave a parsed answer."""
    fallback: bool = False
    """`confidence` only: no answering voter had a confidence, `first-non-blank` decided."""


def answer_of(record: ItemRecord) -> str | None:
    """The record's vote: its extracted answer; None when unparsed or the record errored."""
    if record.score is None or record.extracted in (None, INVALID):
        return None
    return record.extracted


def confidence_of(record: ItemRecord) -> float | None:
    """A record's confidence in its answer: the mean token log-probability of the candidate
    its verdict follows (sampled records: the sample whose response is the record's); None
    for a record with one generation or a backend that reports no log-probabilities."""
    for sample in record.samples or ():
        if sample.error is None and sample.response == record.response:
            return sample.mean_logprob
    return None


def choose(voters: Sequence[ItemRecord], strategy: str) -> Choice:
    """The voter whose answer the ensemble takes for one item, by `strategy` (see above).

    `voters` are the item's records, earliest member first; raises ValueError when empty or
    the strategy is unknown.
    """
    if not voters:
        raise ValueError("an item needs at least one voter")
    answers = [answer_of(record) for record in voters]
    answered = sum(answer is not None for answer in answers)
    if strategy == "majority":
        first, count = majority(answers)
        if first is None:
            return Choice(_no_answer(voters), 0, 0)
        return Choice(voters[first], count, answered)
    if strategy == "first-non-blank":
        return _first_non_blank(voters, answers, answered)
    if strategy == "confidence":
        scored = [
            (confidence, -index)
            for index, (record, answer) in enumerate(zip(voters, answers, strict=True))
            if answer is not None and (confidence := confidence_of(record)) is not None
        ]
        if not scored:
            choice = _first_non_blank(voters, answers, answered)
            return Choice(choice.record, choice.votes, answered, fallback=answered > 0)
        # Highest confidence; on a tie the earliest voter (the larger -index).
        index = -max(scored)[1]
        return Choice(voters[index], answers.count(answers[index]), answered)
    raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")


def _first_non_blank(
    voters: Sequence[ItemRecord], answers: Sequence[str | None], answered: int
) -> Choice:
    for record, answer in zip(voters, answers, strict=True):
        if answer is not None:
            return Choice(record, answers.count(answer), answered)
    return Choice(_no_answer(voters), 0, 0)


def _no_answer(voters: Sequence[ItemRecord]) -> ItemRecord:
    """No voter answered: the earliest with a score (wrong, unparsed), else the earliest."""
    return next((record for record in voters if record.score is not None), voters[0])
