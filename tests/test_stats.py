"""Unit tests for pytest_llmeval.analyze.stats."""

from __future__ import annotations

import pytest

from pytest_llmeval.analyze.stats import (
    mean,
    mean_interval,
    percentile,
    t_quantile,
    wilson_interval,
)

# --- wilson_interval ---------------------------------------------------------


def test_wilson_known_value() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_higher_confidence_is_wider() -> None:
    low95, high95 = wilson_interval(8, 10)
    low99, high99 = wilson_interval(8, 10, confidence=0.99)
    assert low99 < low95 and high99 > high95
    # Hand-computed 99% value for 8/10 (z = 2.5758).
    assert low99 == pytest.approx(0.4008, abs=1e-4)


def test_wilson_extremes_are_exact() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert low == pytest.approx(0.7225, abs=1e-4)


def test_wilson_empty() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_fractional_successes() -> None:
    # A mean score of 0.75 over 4 items is 3 "successes".
    assert wilson_interval(0.75 * 4, 4) == pytest.approx(wilson_interval(3, 4))
    low, high = wilson_interval(2.5, 5)
    assert low < 0.5 < high
    assert 0.5 - low == pytest.approx(high - 0.5)  # symmetric at p = 0.5


def test_wilson_narrows_with_n() -> None:
    small = wilson_interval(5, 10)
    large = wilson_interval(500, 1000)
    assert large[1] - large[0] < small[1] - small[0]


@pytest.mark.parametrize(
    ("successes", "n", "confidence"),
    [(11, 10, 0.95), (-1, 10, 0.95), (0, -1, 0.95), (5, 10, 1.0), (5, 10, 0.0)],
)
def test_wilson_invalid(successes: float, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


# --- percentile / mean -------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 95, 3.85),
        ([4, 1, 3, 2], 25, 1.75),
        ([1, 2, 3, 4], 0, 1.0),
        ([1, 2, 3, 4], 100, 4.0),
        ([10, 20, 30, 40, 50], 90, 46.0),
        ([7.5], 37, 7.5),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_empty_and_invalid() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        percentile([1.0], -0.1)


def test_mean() -> None:
    assert mean([1, 2, 3, 4]) == 2.5
    assert mean([0.1] * 10) == 0.1  # fsum: no accumulated rounding error
    assert mean(x for x in (1.0, 0.0)) == 0.5
    assert mean([]) is None


# --- t_quantile and mean_interval (reference values: scipy.stats, computed once) ----------


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        # scipy.stats.t.ppf(p, df)
        (0.975, 1, 12.706204736174694),
        (0.975, 2, 4.302652729749462),
        (0.975, 5, 2.5705818356363146),
        (0.975, 9, 2.262157162798205),
        (0.975, 30, 2.0422724563012378),
        (0.975, 200, 1.9718962236339088),
        (0.995, 4, 4.604094871349992),
    ],
)
def test_t_quantile_matches_scipy(p: float, df: int, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-9)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, rel=1e-9)


def test_mean_interval_matches_scipy_t_interval() -> None:
    scores = [1, 1, 1, 1, 1, 0.5, 0.3, 0.9, 0.2, 0.1]
    # scipy.stats.t.interval(0.95, 9, loc=mean, scale=scipy.stats.sem(scores))
    assert mean_interval(scores) == pytest.approx((0.42812254521243104, 0.9718774547875688))


def test_mean_interval_is_clamped_to_the_score_range() -> None:
    # Five of six items pass and one scores 0.768: scipy's t interval is (0.8619, 1.0607).
    low, high = mean_interval([1, 1, 1, 1, 1, 0.768]) or (None, None)
    assert low == pytest.approx(0.8619375023553958)
    assert high == 1.0


def test_mean_interval_needs_two_values() -> None:
    assert mean_interval([]) is None
    assert mean_interval([0.5]) is None
    assert mean_interval([0.5, 0.5]) == (0.5, 0.5)


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (0.5, 0)])
def test_t_quantile_invalid(p: float, df: int) -> None:
    with pytest.raises(ValueError):
        t_quantile(p, df)
