"""Paired statistics against reference values.

Every expected value below was computed once with scipy 1.17.1 / statsmodels 0.15.0 (the call is
named next to it) or is a published worked example, and written here as a literal: the tests
never compare the code with itself.
"""

from __future__ import annotations

import pytest

from pytest_llmeval.analyze.paired import (
    PairCounts,
    holm,
    mcnemar_exact,
    paired_bootstrap_interval,
    paired_difference_interval,
    sign_test,
    wilcoxon_signed_rank,
)


def floats(text: str) -> list[float]:
    """Whitespace-separated numbers: long reference samples stay compact."""
    return [float(word) for word in text.split()]


def table(both: int, only_a: int, only_b: int, neither: int) -> PairCounts:
    return PairCounts(both=both, only_a=only_a, only_b=only_b, neither=neither)


def test_counts_of_paired_outcomes() -> None:
    pairs = [(True, True)] * 3 + [(True, False)] * 2 + [(False, True)] * 5 + [(False, False)]
    counts = PairCounts.of(pairs)
    assert counts == table(3, 2, 5, 1)
    assert counts.n == 11
    assert counts.delta == pytest.approx(3 / 11)


# statsmodels.stats.contingency_tables.mcnemar(table, exact=True).pvalue,
# table = [[both, only_a], [only_b, neither]]
@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (table(14, 5, 0, 22), 0.0625),
        (table(50, 12, 4, 34), 0.076812744140625),
        (table(500, 40, 61, 399), 0.046044066929342785),
        (table(10, 0, 0, 10), 1.0),  # no discordant pair: no evidence either way
    ],
)
def test_mcnemar_exact_matches_statsmodels(counts: PairCounts, expected: float) -> None:
    assert mcnemar_exact(counts) == pytest.approx(expected, rel=1e-12)


def test_newcombe_interval_matches_altman_worked_example() -> None:
    # Altman, Machin, Bryant, Gardner (2000), Statistics with Confidence, Table 6.2: 41 pairs,
    # 14 both, 5 only the first, 0 only the second, 22 neither; difference 0.122,
    # Newcombe's method 10 interval 0.011 to 0.226 (here B is the first classification).
    low, high = paired_difference_interval(table(14, 0, 5, 22))  # type: ignore[misc]
    assert table(14, 0, 5, 22).delta == pytest.approx(0.122, abs=5e-4)
    assert (low, high) == (pytest.approx(0.011, abs=5e-4), pytest.approx(0.226, abs=5e-4))


def test_newcombe_interval_matches_fagerland_example() -> None:
    # Fagerland, Lydersen, Laake (2014), Stat Med 33:2850, airway hyper-responsiveness before
    # and after stem cell transplantation: 1 both, 1 only before, 7 only after, 12 neither;
    # Newcombe square-and-add interval for after - before: 0.026 to 0.507.
    low, high = paired_difference_interval(table(1, 1, 7, 12))  # type: ignore[misc]
    assert (low, high) == (pytest.approx(0.026, abs=5e-4), pytest.approx(0.507, abs=5e-4))


def test_newcombe_interval_is_antisymmetric_and_stays_in_range() -> None:
    forward = paired_difference_interval(table(30, 2, 9, 4))
    backward = paired_difference_interval(table(30, 9, 2, 4))
    assert forward is not None and backward is not None
    assert forward == pytest.approx((-backward[1], -backward[0]))
    everything = paired_difference_interval(table(0, 0, 20, 0))  # B right on every item
    assert everything is not None and everything[1] == 1.0 and 0.0 < everything[0] < 1.0
    assert paired_difference_interval(table(0, 0, 0, 0)) is None


def test_identical_arms_give_an_interval_around_zero_not_a_point() -> None:
    # The Wald interval has zero width with no discordant pairs; Newcombe's does not.
    interval = paired_difference_interval(table(12, 0, 0, 8))
    assert interval is not None
    low, high = interval
    assert low < 0.0 < high


# scipy.stats.binomtest(wins, wins + losses).pvalue
@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ([0.12, -0.05, 0.3, 0.08, 0.21, -0.11, 0.02, 0.4, 0.15, -0.02, 0.07, 0.33], 0.14599609375),
        ([1, 0, 0, 1, -1, 1, 1, 0, 1, 1, -1, 1, 0, 1, 1, 1, -1, 1, 0, 1], 0.03515625),
        ([0.0, 0.0], 1.0),
    ],
)
def test_sign_test_matches_scipy(differences: list[float], expected: float) -> None:
    assert sign_test(differences) == pytest.approx(expected, rel=1e-12)


NO_TIES_30 = floats(
    """
    0.45818 -0.46113 0.13362 -0.06355 -0.04053 0.00688 -0.354 0.00361 -0.12304
    0.7146 0.09516 -0.02053 -0.00626 -0.08361 -0.16103 -0.02816 0.14639 0.00229
    0.24155 0.01004 0.05485 0.35916 0.15902 -0.05105 0.01343 0.15811 0.43702
    -0.00392 0.00129 0.25046
    """
)  # numpy.random.default_rng(3).normal(0.05, 0.2, 30), rounded to 5 places


# scipy.stats.wilcoxon(d).pvalue (exact: no ties, n <= 50), or with
# method=scipy.stats.PermutationMethod(n_resamples=numpy.inf) (every sign pattern) where tied.
@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ([0.12, -0.05, 0.3, 0.08, 0.21, -0.11, 0.02, 0.4, 0.15, -0.03], 0.083984375),
        (NO_TIES_30, 0.22855282202363014),
        # tied |d| = 0.02, n = 12: scipy's default enumerates the sign patterns
        ([0.12, -0.05, 0.3, 0.08, 0.21, -0.11, 0.02, 0.4, 0.15, -0.02, 0.07, 0.33], 0.0224609375),
        # heavily tied quarter-point scores, n = 18
        (
            floats(
                """
                0.5 0.5 -0.25 0.25 0.75 -0.5 0.5 1.0 0.25 0.25 -0.75 0.5 0.25 1.0 0.5 -0.25 0.75
                0.5
                """
            ),
            0.01737213134765625,
        ),
        # all |d| tied and zeros dropped: the exact test is the sign test
        ([1, 0, 0, 1, -1, 1, 1, 0, 1, 1, -1, 1, 0, 1, 1, 1, -1, 1, 0, 1], 0.03515625),
    ],
)
def test_wilcoxon_exact_matches_scipy(differences: list[float], expected: float) -> None:
    assert wilcoxon_signed_rank(differences) == pytest.approx(expected, rel=1e-12)


def test_wilcoxon_normal_approximation_above_fifty_matches_scipy() -> None:
    # numpy.random.default_rng(7).normal(0.03, 0.2, 80), rounded to 6 places;
    # scipy.stats.wilcoxon(d).pvalue (n > 50: the normal approximation)
    differences = floats(
        """
        0.030246 0.089749 -0.024828 -0.148118 -0.060934 -0.168329 0.042029 0.298043
        -0.068441 -0.094095 0.127968 0.101377 0.051083 -0.156094 0.02415 0.169061
        -0.238843 -0.061523 -0.350245 -0.227908 -0.338347 -0.017018 -0.223489 0.084253
        0.06135 -0.007386 -0.473352 -0.077739 0.0203 0.052662 -0.276027 -0.065551
        -0.165704 -0.131767 0.24218 -0.131507 0.023496 0.206878 -0.08672 0.00766
        0.052093 0.042756 -0.215011 0.045228 0.301765 -0.279429 0.201877 0.053871
        -0.098294 0.430083 0.182452 -0.209858 0.044903 0.145338 -0.007756 0.166582
        0.016697 0.16345 0.317705 -0.105132 0.070628 -0.062662 0.055454 -0.207439
        -0.08586 -0.009239 0.209753 0.259044 -0.234706 -0.128928 0.159381 -0.368484
        -0.062634 0.010543 0.281403 0.167881 -0.035443 -0.043715 -0.020039 0.334706
        """
    )
    assert wilcoxon_signed_rank(differences) == pytest.approx(0.7735172670376188, rel=1e-9)
    assert wilcoxon_signed_rank([0.0, 0.0, 0.0]) == 1.0


def test_paired_bootstrap_agrees_with_scipy_within_resampling_error() -> None:
    differences = [0.12, -0.05, 0.3, 0.08, 0.21, -0.11, 0.02, 0.4, 0.15, -0.02, 0.07, 0.33]
    # scipy.stats.bootstrap((d,), numpy.mean, method="percentile", n_resamples=100000,
    # random_state=1).confidence_interval: (0.04083333, 0.2125). Different generators:
    # the two agree to within the Monte Carlo error of 10,000 resamples.
    interval = paired_bootstrap_interval(differences, resamples=10_000, seed=0)
    assert interval is not None
    assert interval[0] == pytest.approx(0.04083333, abs=0.005)
    assert interval[1] == pytest.approx(0.2125, abs=0.005)
    # Seeded: the same records give the same interval in every run.
    assert paired_bootstrap_interval(differences, resamples=10_000, seed=0) == interval
    assert paired_bootstrap_interval([0.3]) is None


# statsmodels.stats.multitest.multipletests(p, method="holm")[1]
def test_holm_matches_statsmodels() -> None:
    adjusted = holm([0.01, 0.04, 0.03, 0.2, 0.005])
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.2, 0.025], rel=1e-12)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
