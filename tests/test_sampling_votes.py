"""Issue 14: the parts of a sampled item that need no model: the vote, the selectors, the
failure line, the best-of-n gates, the command-line overrides and the cache key."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pytest_llmeval.analyze.gates import GateError, check_gate, parse_gate
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import SampleRecord
from pytest_llmeval.declare.selectors import SelectorError, select_candidate
from pytest_llmeval.declare.settings import SamplingOverride
from pytest_llmeval.declare.task import Candidate, Generation
from pytest_llmeval.run.cache_key import cache_key
from pytest_llmeval.run.samples import candidates_line, verdict, vote


def _samples(answers: Sequence[str | None], target: str = "18") -> list[SampleRecord]:
    return [
        SampleRecord(i, 100 + i, f"... {a}", a, float(a == target), a == target,
                     tokens_out=10 + i, mean_logprob=-1.0 - i / 10)
        for i, a in enumerate(answers)
    ]  # fmt: skip


def test_the_majority_decides_and_the_line_shows_the_vote() -> None:
    samples = _samples(["32", "32", "18", "32", "7"])
    votes, followed, problem = vote(samples, None, "majority")
    assert (votes.majority, votes.majority_votes, followed, problem) == ("32", 3, 0, None)
    assert (votes.correct, votes.n, votes.agreement) == (1, 5, 0.6)
    assert verdict(votes) is False
    assert candidates_line(samples, votes) == "maj 3/5; candidates 32, 32, 18, 32, 7"


def test_a_tie_goes_to_the_answer_voted_first_and_unparsed_do_not_vote() -> None:
    votes, followed, _ = vote(_samples([None, "18", "7", "7", "18"]), None, "majority")
    assert (votes.majority, votes.majority_votes, followed) == ("18", 2, 1)
    assert verdict(votes) is True
    votes, followed, _ = vote(_samples([None, None]), None, "majority")
    assert (votes.majority, votes.majority_votes, votes.agreement, followed) == (
        None,
        0,
        None,
        None,
    )
    assert verdict(votes) is False


def test_pass_by_any_and_selected() -> None:
    samples = _samples(["7", "18", "7"])
    votes, followed, _ = vote(samples, None, "any")
    assert verdict(votes) is True and followed == 1  # the oracle: the first right candidate
    # logprob picks the highest mean log-probability: sample 0 (-1.0).
    votes, followed, _ = vote(samples, "logprob", "selected")
    assert (votes.selected, votes.selected_correct, followed, verdict(votes)) == (
        0,
        False,
        0,
        False,
    )
    # shortest picks the fewest tokens: sample 0 (10 tokens).
    assert vote(samples, "shortest", "majority")[0].selected == 0
    votes, _, _ = vote(samples, lambda cands: 1, "selected")
    assert votes.selected == 1 and verdict(votes) is True and votes.selector is not None


def test_built_in_selectors_break_ties_to_the_lowest_index() -> None:
    same = [Candidate(i, "abc", "1", -0.5, 4) for i in range(3)]
    assert select_candidate("logprob", same) == 0
    assert select_candidate("shortest", same) == 0
    texts = [Candidate(0, "long text", "1", None, None), Candidate(1, "short", "2", None, None)]
    assert select_candidate("shortest", texts) == 1  # characters when tokens are not counted


def test_a_selector_that_cannot_pick_says_why() -> None:
    no_logprobs = [Candidate(0, "a", "1", None, 3)]
    with pytest.raises(SelectorError, match="needs token log-probabilities"):
        select_candidate("logprob", no_logprobs)
    with pytest.raises(SelectorError, match="must return an index in 0..0, got 3"):
        select_candidate(lambda cands: 3, no_logprobs)
    samples = _samples(["7", "18"])
    for s in samples:
        s.mean_logprob = None
    _, _, problem = vote(samples, "logprob", "majority")
    assert problem is not None and "log-probabilities" in problem


def _metrics(**sampled: object) -> Metrics:
    base = dict.fromkeys(Metrics.__dataclass_fields__)
    base.update(n=20, task_rows=20, partial=False, model_loads=0)
    base.update(sampled)
    return Metrics(**base)  # type: ignore[arg-type]


def test_best_of_n_gates_read_their_metric_and_check_n() -> None:
    metrics = _metrics(
        samples_n=5, maj_at_n=0.45, maj_at_n_ci95=[0.3, 0.6], mean_at_n=0.3,
        mean_at_n_ci95=[0.2, 0.4], oracle_at_n=0.7, oracle_at_n_ci95=[0.5, 0.85],
        pass_at_k={"1": 0.3, "2": 0.5}, pass_at_k_ci95={"1": [0.2, 0.4], "2": [0.4, 0.6]},
    )  # fmt: skip
    held = check_gate(parse_gate("gsm8k:maj@5>=0.4", "cli"), "gsm8k", "m", metrics)
    assert (held.passed, held.value, held.interval) == (True, 0.45, (0.3, 0.6))
    failed = check_gate(parse_gate("pass@2>=0.6", "cli"), "gsm8k", "m", metrics)
    assert (failed.passed, failed.value) == (False, 0.5)
    wrong_n = check_gate(parse_gate("maj@3>=0.1", "cli"), "gsm8k", "m", metrics)
    assert wrong_n.passed is False and "drew 5 candidates" in str(wrong_n.reason)
    too_far = check_gate(parse_gate("pass@6>=0.1", "cli"), "gsm8k", "m", metrics)
    assert too_far.passed is False and "k <= the 5 candidates" in str(too_far.reason)
    unsampled = check_gate(parse_gate("oracle@5>=0.1", "cli"), "t", "m", _metrics())
    assert unsampled.passed is False and "one per item" in str(unsampled.reason)
    with pytest.raises(GateError, match="maj@N"):
        parse_gate("best@5>=0.1", "cli")


def test_command_line_overrides_make_a_sampled_generation() -> None:
    greedy = Generation(max_new_tokens=64)
    sampled = SamplingOverride(samples=5, temperature=0.7, top_p=0.9).apply(greedy)
    assert (sampled.n, sampled.temperature, sampled.top_p, sampled.problem) == (5, 0.7, 0.9, None)
    assert SamplingOverride().apply(greedy) is greedy
    refused = SamplingOverride(samples=5).apply(greedy)
    assert refused.problem is not None and "temperature > 0" in refused.problem


def test_n_is_not_part_of_a_candidates_cache_key() -> None:
    # Raising n from 3 to 5 must find candidates 0..2 under the same keys.
    identity = {"backend": "x"}
    three = Generation(temperature=0.7, n=3)
    five = Generation(temperature=0.7, n=5)
    assert cache_key(identity, "p", three, 2, 11) == cache_key(identity, "p", five, 2, 11)
    assert cache_key(identity, "p", five, 2, 11) != cache_key(identity, "p", five, 3, 11)
