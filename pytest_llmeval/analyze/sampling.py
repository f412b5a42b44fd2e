"""Estimators of best-of-n sampling: n candidates per item, scored one by one.

One item sampled n times says more than one greedy answer: how often a single random candidate
is right (mean@n), whether voting fixes it (maj@n), whether any candidate is right at all
(oracle@n, an upper bound for every selection method), what k tries are worth (pass@k, the
unbiased estimator of Chen et al. 2021) and how a reranker's pick does (rerank@n).

Samples of one item are not independent (same prompt, same model), so intervals treat the
ITEM as the unit: mean@n gets a cluster-robust standard error with items as clusters, the
per-item metrics a percentile bootstrap that resamples items. Stdlib only, like `stats`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from pytest_llmeval.analyze.stats import percentile, shared_bootstrap

__all__ = ["ItemSamples", "SamplingMetrics", "majority", "pass_at_k", "sampling_metrics"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item with `n` samples, `c` of them correct (Chen et al. 2021,
    eq. 1): the chance that k of the n samples drawn without replacement include a correct one,
    ``1 - C(n-c, k) / C(n, k)``.

    Exact: integer binomials and one correctly rounded division, so it neither overflows nor
    loses precision for n in the thousands (a float product would drift for small values).
    Raises ValueError for k < 1, k > n, c < 0 or c > n.
    """
    if k < 1 or k > n:
        raise ValueError(f"k must be within [1, n={n}], got k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"c (correct samples) must be within [0, n={n}], got c={c}")
    total = math.comb(n, k)
    return (total - math.comb(n - c, k)) / total  # comb(n - c, k) is 0 when n - c < k


def majority(answers: Sequence[str | None]) -> tuple[int | None, int]:
    """The majority vote over one item's extracted answers, in sample order.

    Returns (index of the winning answer's FIRST sample, the winner's vote count). None answers
    (nothing could be parsed) do not vote; all None gives (None, 0). A tie goes to the answer
    whose first vote came earliest, so the result depends only on the sample order, never on a
    seed or on dict order. Answers are compared as given: normalizing ('18' vs '18.0') is the
    scorer's job.
    """
    first: dict[str, int] = {}
    votes: dict[str, int] = {}
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        first.setdefault(answer, index)
        votes[answer] = votes.get(answer, 0) + 1
    if not votes:
        return None, 0
    winner = min(votes, key=lambda answer: (-votes[answer], first[answer]))
    return first[winner], votes[winner]


@dataclass(frozen=True)
class ItemSamples:
    """What the estimators need of one item sampled several times."""

    correct: tuple[bool, ...]
    """Each sample's correctness, in sample order (a sample that errored counts as False)."""
    majority_correct: bool
    """Whether the majority answer (see `majority`) is correct; False when nothing voted."""
    agreement: float | None
    """Share of the item's samples that voted for the majority answer (votes / samples); None
    when nothing voted."""
    selected_correct: bool | None = None
    """Whether the sample a reranker picked is correct; None when no reranker picked one."""


@dataclass(frozen=True)
class SamplingMetrics:
    """Best-of-n metrics of a set of items, with 95% intervals that treat items as the unit."""

    n: int
    """Samples per item: the largest number of samples of any item."""
    items: int
    """Items aggregated."""
    mean_at_n: float
    """Share of all samples that are correct, sum(correct samples) / sum(samples) over items:
    the expected accuracy of one random candidate. Equal to the mean of the per-item shares
    when every item has n samples; with unequal counts an item weighs by its samples."""
    mean_at_n_ci95: tuple[float, float]
    """95% normal interval of mean_at_n with a cluster-robust standard error (items are the
    clusters, CR0 with the G/(G-1) factor, as statsmodels' cluster covariance), clamped to
    [0, 1]; (0.0, 1.0) with fewer than two items."""
    maj_at_n: float
    """Share of items whose majority answer is correct."""
    maj_at_n_ci95: tuple[float, float]
    """95% percentile bootstrap interval of maj_at_n, resampling items."""
    oracle_at_n: float
    """Share of items with at least one correct sample (pass@n): the ceiling of any selection."""
    oracle_at_n_ci95: tuple[float, float]
    """95% percentile bootstrap interval of oracle_at_n, resampling items."""
    pass_at_k: dict[int, float]
    """k -> mean over items of the unbiased pass@k, for every k in 1..n. An item with fewer
    than k samples is left out of that k (its pass@k is undefined)."""
    pass_at_k_ci95: dict[int, tuple[float, float]]
    """k -> 95% percentile bootstrap interval of pass_at_k[k], resampling items."""
    rerank_at_n: float | None
    """Share of the items with a reranker's pick whose pick is correct; None when no item has
    one."""
    rerank_at_n_ci95: tuple[float, float] | None
    """95% percentile bootstrap interval of rerank_at_n; None when rerank_at_n is None."""
    self_consistency: float | None
    """Mean agreement of the items that had a vote; None when no item had one."""


def _mean_interval(items: Sequence[ItemSamples], p: float) -> tuple[float, float]:
    """Cluster-robust normal interval of the ratio sum(c_i) / sum(m_i), items as clusters.

    For an intercept-only regression on the per-sample 0/1 outcomes this is exactly
    statsmodels' ``OLS(...).fit(cov_type='cluster')`` standard error: its default correction
    G/(G-1) * (N-1)/(N-K) reduces to G/(G-1) since K = 1.
    """
    clusters = len(items)
    if clusters < 2:
        return 0.0, 1.0
    samples = sum(len(item.correct) for item in items)
    spread = math.fsum((sum(item.correct) - p * len(item.correct)) ** 2 for item in items)
    se = math.sqrt(spread) / samples * math.sqrt(clusters / (clusters - 1))
    half = NormalDist().inv_cdf(0.975) * se
    return max(0.0, p - half), min(1.0, p + half)


def _interval(estimates: list[float]) -> tuple[float, float]:
    """2.5th / 97.5th percentiles; (0.0, 1.0), nothing known, when no resample had an estimate."""
    low, high = percentile(estimates, 2.5), percentile(estimates, 97.5)
    if low is None or high is None:
        return 0.0, 1.0
    return low, high


def sampling_metrics(
    items: Sequence[ItemSamples], resamples: int = 2000, seed: int = 0
) -> SamplingMetrics | None:
    """Aggregate best-of-n metrics over `items`; None for no items.

    The bootstrap draws `resamples` resamples of the items with replacement from
    ``random.Random(seed)``, ONE shared set for every bootstrapped metric so their intervals are
    consistent with each other and the same records give the same intervals in every run;
    bounds are the 2.5th / 97.5th percentiles (`stats.percentile`). A resample with no item
    eligible for a metric (no item with k samples, no reranked item) is skipped for that metric.
    Raises ValueError for an item with no samples or `resamples` < 1.
    """
    if not items:
        return None
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    for index, item in enumerate(items):
        if not item.correct:
            raise ValueError(f"item {index} has no samples: pass at least one correctness value")
    n = max(len(item.correct) for item in items)
    counts = [(len(item.correct), sum(item.correct)) for item in items]
    # Every per-item contribution is a function of this signature; resampling counts how often
    # each distinct signature is drawn, so a resample costs O(items + signatures * n), not
    # O(items * n), which keeps n = 100 candidates per item affordable in pure Python.
    signatures: dict[tuple[int, int, bool, bool | None], int] = {}
    key_of = [
        signatures.setdefault((m, c, item.majority_correct, item.selected_correct), len(signatures))
        for (m, c), item in zip(counts, items, strict=True)
    ]
    keys = list(signatures)
    pass_table = [
        [pass_at_k(m, c, k) if k <= m else None for k in range(1, n + 1)] for m, c, _, _ in keys
    ]

    def estimate(weights: Sequence[int]) -> dict[str, float | None]:
        """Every bootstrapped metric of the items drawn `weights[key]` times per signature."""
        total = sum(weights)
        out: dict[str, float | None] = {
            "maj": sum(w for w, key in zip(weights, keys, strict=True) if key[2]) / total,
            "oracle": sum(w for w, key in zip(weights, keys, strict=True) if key[1] > 0) / total,
        }
        picked = [(w, key[3]) for w, key in zip(weights, keys, strict=True) if key[3] is not None]
        picked_total = sum(w for w, _ in picked)
        out["rerank"] = sum(w for w, hit in picked if hit) / picked_total if picked_total else None
        for k in range(1, n + 1):
            pairs = [(w, row[k - 1]) for w, row in zip(weights, pass_table, strict=True)]
            eligible = sum(w for w, value in pairs if value is not None)
            out[f"pass{k}"] = (
                math.fsum(w * value for w, value in pairs if value is not None) / eligible
                if eligible
                else None
            )
        return out

    drawn_once = Counter(key_of)
    point = estimate([drawn_once[key] for key in range(len(keys))])
    empty: dict[str, list[float]] = {name: [] for name in point}
    boot = empty | shared_bootstrap(estimate, key_of, len(keys), resamples, seed)

    def point_of(name: str) -> float:
        result = point[name]
        assert result is not None
        return result

    mean_at_n = sum(c for _, c in counts) / sum(m for m, _ in counts)
    agreements = [item.agreement for item in items if item.agreement is not None]
    rerank = point["rerank"]
    return SamplingMetrics(
        n=n,
        items=len(items),
        mean_at_n=mean_at_n,
        mean_at_n_ci95=_mean_interval(items, mean_at_n),
        maj_at_n=point_of("maj"),
        maj_at_n_ci95=_interval(boot["maj"]),
        oracle_at_n=point_of("oracle"),
        oracle_at_n_ci95=_interval(boot["oracle"]),
        pass_at_k={k: point_of(f"pass{k}") for k in range(1, n + 1)},
        pass_at_k_ci95={k: _interval(boot[f"pass{k}"]) for k in range(1, n + 1)},
        rerank_at_n=rerank,
        rerank_at_n_ci95=_interval(boot["rerank"]) if rerank is not None else None,
        self_consistency=math.fsum(agreements) / len(agreements) if agreements else None,
    )
