"""Paired statistics for comparing two arms on the same items.

Two arms (models, prompt variants, a patched model and its baseline) scored on the same items
give paired outcomes: each item is its own control, so the tests here look only at how each
item moved, never at two independent accuracies.

- Binary outcomes (correct / not): `mcnemar_exact` (the exact binomial test on the discordant
  pairs) and `paired_difference_interval`, Newcombe's method 10 (Newcombe 1998, Stat Med
  17:2635): the Wilson intervals of the two accuracies combined with the correlation of the
  pairs. It behaves at 0 and 100% and with few discordant pairs, where the Wald interval
  collapses to zero width.
- Continuous scores (similarity, F1, a weighted QA score): `paired_bootstrap_interval` (a
  percentile bootstrap of the mean difference, seeded so a report is reproducible), and two
  tests of "no shift": `sign_test` and `wilcoxon_signed_rank` (scipy's defaults: exact for up
  to 50 non-zero differences without ties, the normal approximation otherwise).
- `holm`: Holm-Bonferroni adjusted p-values when several arms are compared with one baseline.

Stdlib only, like `stats`: the plugin stays light to install.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from pytest_llmeval.analyze.stats import percentile, wilson_interval

__all__ = [
    "PairCounts",
    "holm",
    "mcnemar_exact",
    "paired_bootstrap_interval",
    "paired_difference_interval",
    "sign_test",
    "wilcoxon_signed_rank",
]


@dataclass(frozen=True)
class PairCounts:
    """The 2x2 table of paired binary outcomes, baseline arm A against candidate arm B."""

    both: int
    """Items both arms got right."""
    only_a: int
    """Items only the baseline got right (B lost them)."""
    only_b: int
    """Items only the candidate got right (B won them)."""
    neither: int
    """Items both arms got wrong."""

    @classmethod
    def of(cls, pairs: Sequence[tuple[bool, bool]]) -> PairCounts:
        """Count `(a_correct, b_correct)` pairs."""
        table = Counter(pairs)
        return cls(
            both=table[(True, True)],
            only_a=table[(True, False)],
            only_b=table[(False, True)],
            neither=table[(False, False)],
        )

    @property
    def n(self) -> int:
        """Items in the table."""
        return self.both + self.only_a + self.only_b + self.neither

    @property
    def delta(self) -> float:
        """Accuracy of B minus accuracy of A (0.0 for no pairs)."""
        return (self.only_b - self.only_a) / self.n if self.n else 0.0


def _binomial_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exact (integer arithmetic, one rounding)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)


def mcnemar_exact(counts: PairCounts) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs as a Binomial(b + c, 1/2) test
    (what statsmodels' `mcnemar(exact=True)` computes). 1.0 when no pair is discordant."""
    discordant = counts.only_a + counts.only_b
    if discordant == 0:
        return 1.0
    return min(1.0, 2.0 * _binomial_tail(min(counts.only_a, counts.only_b), discordant))


def paired_difference_interval(
    counts: PairCounts, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Newcombe's method 10 interval for accuracy(B) - accuracy(A) on paired items.

    Each arm's Wilson interval gives how far its accuracy may move down and up; the two are
    combined with the phi correlation of the pairs, which Newcombe shrinks by n/2 when it is
    positive (his continuity adjustment). None for no pairs.
    """
    n = counts.n
    if n == 0:
        return None
    right_a = counts.both + counts.only_a
    right_b = counts.both + counts.only_b
    p_a, p_b = right_a / n, right_b / n
    low_a, high_a = wilson_interval(right_a, n, confidence)
    low_b, high_b = wilson_interval(right_b, n, confidence)
    margins = right_a * (n - right_a) * right_b * (n - right_b)
    cross = counts.both * counts.neither - counts.only_a * counts.only_b
    if cross > n / 2:
        cross_adjusted = cross - n / 2
    elif cross < 0:
        cross_adjusted = cross
    else:
        cross_adjusted = 0.0
    phi = cross_adjusted / math.sqrt(margins) if margins > 0 else 0.0
    delta = p_b - p_a
    down_b, up_b = p_b - low_b, high_b - p_b
    down_a, up_a = p_a - low_a, high_a - p_a
    low = delta - math.sqrt(max(0.0, down_b**2 - 2 * phi * down_b * up_a + up_a**2))
    high = delta + math.sqrt(max(0.0, up_b**2 - 2 * phi * up_b * down_a + down_a**2))
    return max(-1.0, low), min(1.0, high)


def paired_bootstrap_interval(
    differences: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of per-item differences (B - A).

    Items are resampled with replacement `resamples` times from a generator seeded with
    `seed`, so the same records give the same interval in every run. None for fewer than two
    differences.
    """
    n = len(differences)
    if n < 2:
        return None
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    draw = random.Random(seed)
    means = sorted(
        math.fsum(differences[draw.randrange(n)] for _ in range(n)) / n for _ in range(resamples)
    )
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = percentile(means, tail), percentile(means, 100.0 - tail)
    assert low is not None and high is not None
    return low, high


def sign_test(differences: Sequence[float]) -> float:
    """Two-sided sign test p-value of "B and A are equally likely to be ahead": the non-zero
    differences as a Binomial(n, 1/2) test (scipy's `binomtest`). 1.0 with no non-zero one."""
    wins = sum(1 for d in differences if d > 0)
    losses = sum(1 for d in differences if d < 0)
    if wins + losses == 0:
        return 1.0
    return min(1.0, 2.0 * _binomial_tail(min(wins, losses), wins + losses))


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def _signed_rank_sum_counts(doubled_ranks: Sequence[int]) -> list[int]:
    """How many of the (1 << n) sign patterns give each sum of positive (doubled) ranks."""
    counts = [1] + [0] * sum(doubled_ranks)
    for rank in doubled_ranks:
        for total in range(len(counts) - 1, rank - 1, -1):
            counts[total] += counts[total - rank]
    return counts


def wilcoxon_signed_rank(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value for per-item differences (B - A).

    Zero differences are dropped (scipy's default `zero_method="wilcox"`). For at most 50
    non-zero differences the p-value is exact: every sign pattern of the observed ranks is
    counted, tied ranks included (scipy enumerates the same patterns for up to 13 tied
    differences and samples them beyond). Above 50, the normal approximation with the tie
    correction and no continuity correction (scipy's defaults). 1.0 with no non-zero one.
    """
    nonzero = [d for d in differences if d != 0]
    n = len(nonzero)
    if n == 0:
        return 1.0
    ranks = _ranks([abs(d) for d in nonzero])
    positive = math.fsum(r for r, d in zip(ranks, nonzero, strict=True) if d > 0)
    if n <= 50:
        # Tied ranks are multiples of 1/2: doubled, every sum is an exact integer.
        doubled = [int(round(2 * r)) for r in ranks]
        counts = _signed_rank_sum_counts(doubled)
        observed = int(round(2 * positive))
        at_most, at_least = sum(counts[: observed + 1]), sum(counts[observed:])
        return min(1.0, 2.0 * min(at_most, at_least) / (1 << n))
    mean_rank_sum = n * (n + 1) / 4
    ties = Counter(ranks).values()
    variance = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in ties) / 48
    if variance <= 0:
        return 1.0
    z = (positive - mean_rank_sum) / math.sqrt(variance)
    return min(1.0, 2.0 * NormalDist().cdf(-abs(z)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the k-th smallest of m is
    multiplied by (m - k + 1), made non-decreasing in that order, and capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for k, index in enumerate(order):
        running = max(running, min(1.0, (m - k) * p_values[index]))
        adjusted[index] = running
    return adjusted
