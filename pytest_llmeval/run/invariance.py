"""The batch-invariance check (`--llmeval-invariance-check N`): which items, and the check.

Batching is not free of numerics: left padding shifts a model's logits slightly (about 4e-5
on the embedded model in fp32), and on other models and GPUs a close top-2 margin flips a
greedy token, so an item's answer can depend on its batch-mates (lm-evaluation-harness issue
2498: GSM8K accuracy 0.30 at batch size 1, 0.13 at 128). The check generates a seeded sample
of N items per task x model again alone and compares.

The sample is a pure function of the task's chosen rows, N and the task seed, so every xdist
worker marks the same items at collection and the result does not depend on `-n`. The check
runs on the worker that runs the item, after its batched generation and scoring, through the
engine (`Engine.generate_alone`: a batch of one, never from or into the cache).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pytest_llmeval.analyze.record import Invariance
from pytest_llmeval.backends import GenerationResult
from pytest_llmeval.declare.sampling import sample_order
from pytest_llmeval.score.scorers import Score


def checked_rows(chosen: Sequence[int], n: int, seed: int) -> frozenset[int]:
    """The row indices to check: the first `n` of the seeded order over the chosen rows
    (the rows `--limit` kept, in row order), with the task seed `seed`."""
    if n <= 0:
        return frozenset()
    order = sample_order(len(chosen), seed)
    return frozenset(chosen[i] for i in order[:n])


def check_unbatched(
    generate: Callable[[], GenerationResult],
    score: Callable[[str], Score],
    batched_text: str,
    batched_score: float,
    pass_threshold: float,
    describe: Callable[[BaseException], str],
) -> Invariance:
    """Generate alone, score, and compare with the batched text and score. A failure is the
    check's own `error` (`describe` makes its one line); the item keeps its batched result."""
    try:
        text = generate().text
        unbatched = float(score(text).value)
    except Exception as exc:
        return Invariance(None, None, None, None, None, error=describe(exc))
    return Invariance(
        unbatched_response=text,
        unbatched_score=unbatched,
        unbatched_correct=unbatched >= pass_threshold,
        changed=text != batched_text,
        score_changed=unbatched != batched_score,
        error=None,
    )
