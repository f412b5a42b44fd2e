"""Best-of-n estimators (analyze.sampling) against hand-computed and statsmodels values.

Expected values are worked out by hand in the comments, computed exactly with
`fractions.Fraction`, or were computed once with statsmodels 0.15.0 (the call is named next to
the literal): the tests never compare the code with itself.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from pytest_llmeval.analyze.sampling import ItemSamples, majority, pass_at_k, sampling_metrics

T, F = True, False


# --- pass@k ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # c / n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 0, 3, 0.0),  # nothing correct: no k tries help
        (5, 5, 1, 1.0),
        (5, 5, 5, 1.0),
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (5, 4, 2, 1.0),  # C(1,2) = 0: any 2 of 5 include a correct one
        (1000, 1, 500, 0.5),  # 1 - C(999,500)/C(1000,500) = 1 - 500/1000; no overflow
        (1000, 3, 1, 0.003),
    ],
)
def test_pass_at_k_hand_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 64, 100])
def test_pass_at_1_is_the_share_correct(n: int) -> None:
    for c in range(n + 1):
        assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-15)


def test_pass_at_k_large_n_is_exact() -> None:
    # Reference: the exact rational value, rounded once to a float. C(200, 100) ~ 9e58 would
    # overflow or drift in a naive float product of ratios; the result must be the exact value
    # correctly rounded.
    exact = 1 - Fraction(math.comb(193, 100), math.comb(200, 100))
    assert pass_at_k(200, 7, 100) == float(exact)
    assert pass_at_k(200, 7, 100) == pytest.approx(
        0.9929911172418123, abs=1e-15
    )  # float(exact), once


@pytest.mark.parametrize(
    ("n", "c", "k", "names"),
    [
        (5, 2, 0, "k must be within [1, n=5], got k=0"),
        (5, 2, 6, "k must be within [1, n=5], got k=6"),
        (5, -1, 1, "c (correct samples) must be within [0, n=5], got c=-1"),
        (5, 6, 1, "c (correct samples) must be within [0, n=5], got c=6"),
    ],
)
def test_pass_at_k_rejects_bad_arguments(n: int, c: int, k: int, names: str) -> None:
    with pytest.raises(ValueError) as error:
        pass_at_k(n, c, k)
    assert str(error.value) == names


# --- majority -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["3", "18", "18", "4", "18"], (1, 3)),  # clear winner, first vote at index 1
        (["7", "32", "7", "32"], (0, 2)),  # tie: '7' voted first
        (["32", "7", "7", "32"], (0, 2)),  # tie: '32' voted first
        ([None, "5", "6", "6", "5"], (1, 2)),  # tie: '5' first voted at 1; None never votes
        ([None, None, "9"], (2, 1)),
        ([None, None, None], (None, 0)),
        ([], (None, 0)),
        (["42"], (0, 1)),
        (["18", "18.0"], (0, 1)),  # compared as given: normalizing is the scorer's job
    ],
)
def test_majority(answers: list[str | None], expected: tuple[int | None, int]) -> None:
    assert majority(answers) == expected


# --- sampling_metrics -----------------------------------------------------------------------

# Four items, five samples each:
#   A: T T F T F  c=3, majority correct, 3 of 5 agree
#   B: F F F F F  c=0, majority wrong,   2 of 5 agree
#   C: T T T T T  c=5, majority correct, 5 of 5 agree
#   D: F T F F F  c=1, majority wrong,   4 of 5 agree (the same wrong answer)
FOUR = [
    ItemSamples(correct=(T, T, F, T, F), majority_correct=True, agreement=0.6),
    ItemSamples(correct=(F, F, F, F, F), majority_correct=False, agreement=0.4),
    ItemSamples(correct=(T, T, T, T, T), majority_correct=True, agreement=1.0),
    ItemSamples(correct=(F, T, F, F, F), majority_correct=False, agreement=0.8),
]
# A fifth item with only three samples: T F T, c=2, majority correct, 2 of 3 agree.
SHORT = ItemSamples(correct=(T, F, T), majority_correct=True, agreement=2 / 3)


def test_four_items_hand_values() -> None:
    m = sampling_metrics(FOUR, resamples=200)
    assert m is not None
    assert (m.n, m.items) == (5, 4)
    assert m.mean_at_n == pytest.approx(9 / 20)  # (3 + 0 + 5 + 1) / 20
    assert m.maj_at_n == pytest.approx(0.5)  # A and C
    assert m.oracle_at_n == pytest.approx(0.75)  # A, C, D
    # Per item pass@k for k = 1..5:
    #   A (5, 3): 3/5, 1 - C(2,2)/C(5,2) = 0.9, then 1, 1, 1
    #   B (5, 0): 0 for every k;  C (5, 5): 1 for every k
    #   D (5, 1): 1/5, 1 - C(4,2)/C(5,2) = 0.4, 1 - C(4,3)/C(5,3) = 0.6, 1 - 1/5 = 0.8, 1
    expected = {1: 1.8 / 4, 2: 2.3 / 4, 3: 2.6 / 4, 4: 2.8 / 4, 5: 3 / 4}
    assert m.pass_at_k.keys() == expected.keys()
    for k, value in expected.items():
        assert m.pass_at_k[k] == pytest.approx(value)
    assert m.self_consistency == pytest.approx((0.6 + 0.4 + 1.0 + 0.8) / 4)
    assert m.rerank_at_n is None and m.rerank_at_n_ci95 is None


def test_mean_at_n_cluster_robust_interval_matches_statsmodels() -> None:
    # By hand: p = 0.45, per-item residual sums c_i - p*m_i = 0.75, -2.25, 2.75, -1.25; their
    # squares sum to 14.75, SE = sqrt(14.75) / 20 * sqrt(4/3) = 0.221735...
    # statsmodels: y = the 20 per-sample 0/1 outcomes, g = item index of each;
    # OLS(y, ones).fit(cov_type='cluster', cov_kwds={'groups': g}) -> bse[0] 0.22173557826083445
    # and conf_int() [0.015406252517601804, 0.8845937474823979] (normal quantile: use_t is False
    # by default; its default use_correction=True scales by G/(G-1) * (N-1)/(N-K), and with
    # K = 1 regressor that is exactly G/(G-1), the factor the module documents).
    se = 0.22173557826083445
    assert math.sqrt(14.75) / 20 * math.sqrt(4 / 3) == pytest.approx(se, abs=1e-12)
    m = sampling_metrics(FOUR, resamples=10)
    assert m is not None
    low, high = m.mean_at_n_ci95
    assert low == pytest.approx(0.015406252517601804, abs=1e-9)
    assert high == pytest.approx(0.8845937474823979, abs=1e-9)


def test_unequal_sample_counts_use_the_ratio_and_leave_short_items_out_of_large_k() -> None:
    m = sampling_metrics([*FOUR, SHORT], resamples=200)
    assert m is not None
    assert (m.n, m.items) == (5, 5)
    # The ratio (3+0+5+1+2) / (5*4+3) = 11/23, not the mean of shares (0.6+0+1+0.2+2/3)/5.
    assert m.mean_at_n == pytest.approx(11 / 23)
    # statsmodels, same call as above on the 23 samples in 5 clusters: bse 0.18920125094935625,
    # conf_int() [0.10743323187455434, 0.8490885072558803].
    assert m.mean_at_n_ci95[0] == pytest.approx(0.10743323187455434, abs=1e-9)
    assert m.mean_at_n_ci95[1] == pytest.approx(0.8490885072558803, abs=1e-9)
    assert m.maj_at_n == pytest.approx(3 / 5)
    assert m.oracle_at_n == pytest.approx(4 / 5)
    # SHORT (3, 2): pass@1 = 2/3, pass@2 = 1 - C(1,2)/C(3,2) = 1, pass@3 = 1; it has no pass@4/5.
    assert m.pass_at_k[1] == pytest.approx((1.8 + 2 / 3) / 5)
    assert m.pass_at_k[2] == pytest.approx((2.3 + 1) / 5)
    assert m.pass_at_k[3] == pytest.approx((2.6 + 1) / 5)
    assert m.pass_at_k[4] == pytest.approx(2.8 / 4)  # the four 5-sample items only
    assert m.pass_at_k[5] == pytest.approx(3 / 4)
    assert m.self_consistency == pytest.approx((2.8 + 2 / 3) / 5)


def test_rerank_counts_only_items_with_a_pick() -> None:
    items = [
        ItemSamples(correct=(T, F), majority_correct=T, agreement=0.5, selected_correct=T),
        ItemSamples(correct=(F, F), majority_correct=F, agreement=1.0, selected_correct=F),
        ItemSamples(correct=(T, T), majority_correct=T, agreement=1.0, selected_correct=T),
        ItemSamples(correct=(F, T), majority_correct=F, agreement=None),  # no pick, no vote
    ]
    m = sampling_metrics(items, resamples=300)
    assert m is not None
    assert m.rerank_at_n == pytest.approx(2 / 3)
    assert m.rerank_at_n_ci95 is not None
    assert m.rerank_at_n_ci95[0] <= 2 / 3 <= m.rerank_at_n_ci95[1]
    assert m.self_consistency == pytest.approx(2.5 / 3)  # the three items with a vote


def test_bootstrap_is_deterministic_and_contains_the_estimates() -> None:
    first = sampling_metrics([*FOUR, SHORT], resamples=500, seed=3)
    again = sampling_metrics([*FOUR, SHORT], resamples=500, seed=3)
    assert first is not None and first == again
    for point, (low, high) in [
        (first.maj_at_n, first.maj_at_n_ci95),
        (first.oracle_at_n, first.oracle_at_n_ci95),
        *((first.pass_at_k[k], first.pass_at_k_ci95[k]) for k in range(1, 6)),
    ]:
        assert low <= point <= high
        assert low < high  # non-degenerate set: the resamples vary


def test_one_shared_set_of_resamples() -> None:
    # With equal sample counts pass@n of an item is 1 exactly when any sample is correct, so on
    # the SAME resamples pass@5 and oracle@5 agree resample by resample and their intervals are
    # identical; pass@k grows with k in every resample, so both bounds grow with k.
    m = sampling_metrics(FOUR, resamples=400, seed=11)
    assert m is not None
    assert m.pass_at_k_ci95[5] == m.oracle_at_n_ci95
    for k in range(1, 5):
        assert m.pass_at_k_ci95[k][0] <= m.pass_at_k_ci95[k + 1][0]
        assert m.pass_at_k_ci95[k][1] <= m.pass_at_k_ci95[k + 1][1]


def test_bootstrap_width_matches_the_normal_approximation_on_many_items() -> None:
    # 200 items, majority correct on 120: the normal interval 0.6 +- 1.96 * sqrt(0.24 / 200)
    # is (0.5321, 0.6679); the percentile bootstrap of a share converges to it.
    items = [
        ItemSamples(correct=(i < 120, F, T), majority_correct=i < 120, agreement=2 / 3)
        for i in range(200)
    ]
    m = sampling_metrics(items, resamples=2000, seed=0)
    assert m is not None
    assert m.maj_at_n_ci95[0] == pytest.approx(0.5321, abs=0.015)
    assert m.maj_at_n_ci95[1] == pytest.approx(0.6679, abs=0.015)


def test_all_correct_is_degenerate() -> None:
    items = [ItemSamples(correct=(T, T, T), majority_correct=T, agreement=1.0)] * 6
    m = sampling_metrics(items, resamples=100)
    assert m is not None
    assert m.mean_at_n == 1.0 and m.mean_at_n_ci95 == (1.0, 1.0)
    assert m.maj_at_n_ci95 == (1.0, 1.0)
    assert m.oracle_at_n_ci95 == (1.0, 1.0)
    assert m.pass_at_k_ci95 == {1: (1.0, 1.0), 2: (1.0, 1.0), 3: (1.0, 1.0)}


def test_one_item_and_no_items() -> None:
    assert sampling_metrics([]) is None
    m = sampling_metrics(FOUR[:1], resamples=50)
    assert m is not None
    assert m.mean_at_n == pytest.approx(0.6)
    assert m.mean_at_n_ci95 == (0.0, 1.0)  # one cluster: no spread to estimate


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="item 1 has no samples"):
        sampling_metrics([FOUR[0], ItemSamples(correct=(), majority_correct=F, agreement=None)])
    with pytest.raises(ValueError, match="resamples must be at least 1, got 0"):
        sampling_metrics(FOUR, resamples=0)
