"""The ensemble's choice of one item's answer among its voters (analyze/ensemble.py), on
crafted records: the tie rule, unparsed and errored voters, confidence and its fallback."""

from __future__ import annotations

from typing import Any

from conftest import item_record
from pytest_llmeval.analyze.ensemble import choose, confidence_of
from pytest_llmeval.analyze.record import SampleRecord


def _voter(extracted: str | None, correct: bool, **fields: Any) -> Any:
    outcome = "pass" if correct else "fail"
    return item_record(outcome, extracted=extracted, **fields)


def test_majority_tie_goes_to_the_earliest_voter_and_unparsed_do_not_vote() -> None:
    voters = [_voter("[invalid]", False), _voter("3", False), _voter("5", True),
              _voter(None, False), _voter("5", True), _voter("3", False)]  # fmt: skip
    choice = choose(voters, "majority")
    assert (choice.record is voters[1], choice.votes, choice.answered) == (True, 2, 4)
    assert choose(voters[:3], "majority").record is voters[1]
    assert choose([*voters, _voter("5", True)], "majority").record is voters[2]


def test_no_answer_follows_the_earliest_scored_voter() -> None:
    errored = item_record("error", score=None, correct=None, extracted=None, error="boom")
    unparsed = _voter(None, False)
    for strategy in ("majority", "first-non-blank", "confidence"):
        choice = choose([errored, unparsed], strategy)
        assert (choice.record is unparsed, choice.votes, choice.fallback) == (True, 0, False)
    assert choose([errored, errored], "majority").record is errored


def test_confidence_ranks_by_the_kept_candidates_log_prob() -> None:
    def sampled(answer: str, logprob: float | None) -> Any:
        kept = SampleRecord(0, 1, f"#### {answer}", answer, 1.0, True, mean_logprob=logprob)
        other = SampleRecord(1, 2, "other", "9", 0.0, False, mean_logprob=0.0)
        return _voter(answer, True, response=f"#### {answer}", samples=[other, kept])

    low, high, tied, plain = (
        sampled("1", -2.0),
        sampled("2", -0.5),
        sampled("3", -0.5),
        _voter("4", True),
    )
    assert confidence_of(high) == -0.5 and confidence_of(plain) is None
    assert choose([plain, low, high, tied], "confidence").record is high
    choice = choose([_voter(None, False), plain], "confidence")
    assert (choice.record is plain, choice.fallback) == (True, True)
