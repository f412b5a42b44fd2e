"""A sampled item (`Generation.n` > 1): its n candidates generated, scored, voted on.

Each candidate is a request of its own to the engine (`SampleRequest`: sample index k, its own
seed from the task seed, the item id and k, its own cache entry), batched with the other
candidates of the item and of the upcoming items: a run killed after 3 of 5 candidates
resumes with 2 to go, and raising n from 5 to 8 generates only the 3 new ones. The item's
verdict follows the majority vote by default (`Task(pass_by=...)`); its record keeps every
candidate (`ItemRecord.samples`) and the vote (`ItemRecord.votes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmeval.analyze.record import SampleRecord, Votes
from pytest_llmeval.analyze.sampling import majority
from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.declare.describe import selector_name
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.selectors import SelectorError, select_candidate
from pytest_llmeval.declare.task import Candidate
from pytest_llmeval.score.scorers import Score

if TYPE_CHECKING:
    from pytest_llmeval.run.items import EvalItem


class SampleRequest:
    """Candidate `index` of an item, as the engine sees it (its own key, seed and cache)."""

    def __init__(self, item: EvalItem, index: int) -> None:
        self.item = item
        self.index = index

    @property
    def nodeid(self) -> str:
        """The engine's key for this candidate (not a pytest node)."""
        return f"{self.item.nodeid}@sample{self.index}"

    @property
    def model_spec(self) -> ModelSpec:
        """The item's model."""
        return self.item.spec

    def batch_key(self) -> Hashable:
        """Candidates batch with the candidates of alike items."""
        return self.item.batch_key()

    def request(self) -> GenerationRequest:
        """The item's request with this sample index (hence this candidate's own seed)."""
        return dataclasses.replace(self.item.request(), sample_index=self.index)


def sample_requests(item: EvalItem, upcoming: Iterable[EvalItem]) -> list[SampleRequest]:
    """Every candidate of `item`, then every candidate of the upcoming sampled items: the
    share the engine may batch together."""
    own = [SampleRequest(item, k) for k in range(item.generation.n)]
    others = [
        SampleRequest(other, k)
        for other in upcoming
        if other is not item and other.generation.n > 1
        for k in range(other.generation.n)
    ]
    return own + others


Scored = tuple[GenerationResult, Score] | Exception


def generate_candidates(
    item: EvalItem,
    result_for: Callable[[SampleRequest, list[SampleRequest]], GenerationResult],
    score: Callable[[str], Score],
    upcoming: Iterable[EvalItem],
) -> list[Scored]:
    """Each candidate's generation and score, or its error (in sample order)."""
    share = sample_requests(item, upcoming)
    outcomes: list[Scored] = []
    for request in share[: item.generation.n]:
        try:
            generation = result_for(request, share)
            outcomes.append((generation, score(generation.text)))
        except Exception as exc:  # one failed candidate: the others still vote
            outcomes.append(exc)
    return outcomes


def sample_records(
    outcomes: Sequence[Scored],
    seeds: Sequence[int | None],
    pass_threshold: float,
    describe: Callable[[BaseException], str],
) -> list[SampleRecord]:
    """One record per candidate, in sample order."""
    records = []
    for index, (outcome, seed) in enumerate(zip(outcomes, seeds, strict=True)):
        if isinstance(outcome, Exception):
            records.append(
                SampleRecord(index, seed, None, None, None, False, error=describe(outcome))
            )
            continue
        generation, score = outcome
        records.append(
            SampleRecord(
                index=index,
                seed=seed,
                response=generation.text,
                extracted=score.extracted,
                score=float(score.value),
                correct=float(score.value) >= pass_threshold,
                tokens_out=generation.tokens_out,
                latency_s=None if generation.cached else generation.latency_s,
                mean_logprob=generation.mean_logprob,
                cached=generation.cached,
                batch_id=None if generation.cached else generation.batch_id,
                batch_wall_s=None if generation.cached else generation.batch_wall_s,
                batch_energy_j=None if generation.cached else generation.batch_energy_j,
                batch_peak_w=None if generation.cached else generation.batch_peak_w,
            )
        )
    return records


def vote(
    samples: Sequence[SampleRecord],
    select: str | Callable[[Sequence[Candidate]], int] | None,
    pass_by: str,
) -> tuple[Votes, int | None, str | None]:
    """The vote over `samples`, the sample index the item's verdict follows (None: no
    candidate to follow) and the selector's error, when it could not pick."""
    answers = [s.extracted if s.error is None and s.extracted != "[invalid]" else None
               for s in samples]  # fmt: skip
    first, count = majority(answers)
    selected, problem = None, None
    if select is not None:
        made = [s for s in samples if s.error is None and s.response is not None]
        candidates = [
            Candidate(s.index, s.response or "", s.extracted, s.mean_logprob, s.tokens_out)
            for s in made
        ]
        try:
            selected = made[select_candidate(select, candidates)].index if made else None
        except SelectorError as exc:
            problem = str(exc)
    correct = [s.correct for s in samples]
    votes = Votes(
        majority=None if first is None else answers[first],
        majority_votes=count,
        majority_correct=first is not None and samples[first].correct,
        agreement=None if first is None else count / len(samples),
        correct=sum(correct),
        n=len(samples),
        selected=selected,
        selected_correct=None if selected is None else samples[selected].correct,
        selector=selector_name(select),
        pass_by=pass_by,
    )
    return votes, _followed(votes, samples, first, pass_by), problem


def verdict(votes: Votes) -> bool:
    """Whether a sampled item is correct, by what its verdict follows (`Votes.pass_by`)."""
    if votes.pass_by == "selected":
        return votes.selected_correct is True
    if votes.pass_by == "any":
        return votes.correct > 0
    return votes.majority_correct


def _followed(
    votes: Votes, samples: Sequence[SampleRecord], first: int | None, pass_by: str
) -> int | None:
    """The candidate the verdict follows: the majority's first, the selected one, or (any)
    the first correct candidate, else the majority's."""
    if pass_by == "selected":
        return votes.selected
    if pass_by == "any":
        right = [s.index for s in samples if s.correct]
        return right[0] if right else first
    return first


def combined_generation(
    outcomes: Sequence[Scored], followed: int | None
) -> tuple[GenerationResult, Score] | None:
    """The item's own generation facts: the followed candidate's text and score; tokens and
    energy summed over the candidates generated in this run (all of them when every one came
    from the cache), the slowest one's latency (the item is done when its last candidate
    is). None when no candidate was generated."""
    made = [o for o in outcomes if not isinstance(o, Exception)]
    if not made:
        return None
    chosen = outcomes[followed] if followed is not None else made[0]
    if isinstance(chosen, Exception):
        chosen = made[0]
    generation, score = chosen
    generations = [g for g, _ in made if not g.cached] or [g for g, _ in made]
    summed: dict[str, Any] = {
        "tokens_out": _sum([g.tokens_out for g in generations]),
        "energy_j": _sum([g.energy_j for g in generations]),
        "cpu_energy_j": _sum([g.cpu_energy_j for g in generations]),
        "latency_s": max(g.latency_s for g in generations),
        "cached": all(g.cached for g in generations),
    }
    return dataclasses.replace(generation, **summed), score


def _sum(values: Sequence[int | float | None]) -> Any:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def candidates_line(samples: Sequence[SampleRecord], votes: Votes) -> str:
    """`maj 3/5; candidates 32, 32, 18, 32, 7` for an item's failure line."""
    shown = ", ".join(
        "error" if s.error else (s.extracted if s.extracted is not None else "none")
        for s in samples
    )
    picked = "" if votes.selected is None else f"; {votes.selector} picked #{votes.selected}"
    return f"maj {votes.majority_votes}/{votes.n}{picked}; candidates {shown}"


def seeds_of(item: EvalItem) -> list[int | None]:
    """Each candidate's derived seed."""
    return [SampleRequest(item, k).request().seed for k in range(item.generation.n)]


__all__ = [
    "SampleRequest",
    "candidates_line",
    "combined_generation",
    "generate_candidates",
    "sample_records",
    "seeds_of",
    "verdict",
    "vote",
]
