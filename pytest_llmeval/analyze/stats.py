"""Pure statistics helpers for summarising eval results.

Stdlib only (no numpy/scipy) so the plugin stays light to install. Use
:func:`wilson_interval` for pass rates, :func:`percentile` / :func:`mean`
for latency and token summaries, and :func:`cohens_kappa` for agreement between two raters.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from statistics import NormalDist

__all__ = ["cohens_kappa", "mean", "mean_interval", "percentile", "t_quantile", "wilson_interval"]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval ``(low, high)`` for a pass rate.

    ``successes`` may be fractional (mean score times ``n``) for partially
    scored items. Unlike the normal approximation it behaves at 0% and 100%
    and with small ``n``. With ``n == 0`` nothing is known, so the result is
    ``(0.0, 1.0)``. Bounds are clamped to ``[0, 1]``. Raises ``ValueError``
    for a negative ``n``, ``successes`` outside ``[0, n]`` or a confidence
    outside ``(0, 1)``.
    """
    _check_confidence(confidence)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, {n}], got {successes!r}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = max(0.0, centre - half)
    high = min(1.0, centre + half)
    # The bounds are exactly 0 / 1 at the extremes; rounding would otherwise
    # leave something like 1e-17 and a report would show "0.0%" oddly.
    if successes == 0:
        low = 0.0
    if successes == n:
        high = 1.0
    return low, high


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q``-th percentile (``q`` in 0..100) of ``values``.

    Uses linear interpolation between closest ranks, matching numpy's default
    ``"linear"`` method, so ``percentile([1, 2, 3, 4], 50) == 2.5``. Returns
    ``None`` for no values; raises ``ValueError`` if ``q`` is outside 0..100.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within [0, 100], got {q!r}")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + fraction * (ordered[upper] - ordered[lower])


def mean(values: Iterable[float]) -> float | None:
    """Return the arithmetic mean of ``values``, or ``None`` when empty.

    Uses ``math.fsum`` so long lists of small scores don't accumulate
    rounding error.
    """
    items = list(values)
    if not items:
        return None
    return math.fsum(items) / len(items)


def cohens_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Return Cohen's kappa of two raters' labels, one ``(first, second)`` pair per item.

    ``(p_o - p_e) / (1 - p_e)``: observed agreement ``p_o`` corrected by the agreement
    ``p_e`` expected by chance from each rater's own label frequencies, so a sample where
    95% of items carry one label does not make two raters look alike. 1 is perfect
    agreement, 0 chance level, negative worse than chance. Returns ``None`` for no pairs
    and when ``p_e`` is 1 (both raters always give the same single label: kappa is 0/0).
    """
    n = len(pairs)
    if not n:
        return None
    observed = sum(1 for first, second in pairs if first == second) / n
    firsts = Counter(first for first, _ in pairs)
    seconds = Counter(second for _, second in pairs)
    expected = math.fsum(firsts[label] * seconds[label] for label in firsts) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


# --- Interval of a mean (partial-credit scores) --------------------------------------------
# Student's t, computed from the regularized incomplete beta function (stdlib only): a mean of
# scores in [0, 1] is not a count of successes, so it gets a t interval, not a Wilson one.


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast only on one side of the mean; use symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_quantile(p: float, df: int) -> float:
    """The `p` quantile of Student's t with `df` degrees of freedom (p in (0, 1), df >= 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be between 0 and 1, got {p!r}")
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)

    def upper_tail(t: float) -> float:  # P(T > t) for t >= 0
        return 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))

    target = 1.0 - p
    low, high = 0.0, 1.0
    while upper_tail(high) > target:
        low, high = high, high * 2.0
    for _ in range(200):  # bisection: the tail is monotone; 200 halvings reach float precision
        middle = (low + high) / 2.0
        if upper_tail(middle) > target:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def mean_interval(
    values: Sequence[float], confidence: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float] | None:
    """Student-t interval ``(low, high)`` of the mean of ``values``, clamped to ``bounds``.

    None for fewer than two values (no spread to estimate). Equal values give a zero-width
    interval: the t interval knows nothing beyond the sample.
    """
    _check_confidence(confidence)
    n = len(values)
    if n < 2:
        return None
    centre = math.fsum(values) / n
    variance = math.fsum((v - centre) ** 2 for v in values) / (n - 1)
    half = t_quantile(1.0 - (1.0 - confidence) / 2.0, n - 1) * math.sqrt(variance / n)
    return max(bounds[0], centre - half), min(bounds[1], centre + half)


def shared_bootstrap(
    estimate: Callable[[list[int]], Mapping[str, float | None]],
    key_of: Sequence[int],
    keys: int,
    resamples: int,
    seed: int,
) -> dict[str, list[float]]:
    """Each figure's estimates over ONE shared set of item resamples (with replacement, from
    `random.Random(seed)`), so figures of one task x arm have consistent intervals and the same
    records always give the same ones. Item `i` counts toward key `key_of[i]` (items sharing
    a key are estimated once, weighted); `estimate(weights)` gives every figure from the
    per-key weights, and a None estimate is left out of that figure's list."""
    draw = random.Random(seed)
    population = range(len(key_of))
    found: dict[str, list[float]] = {}
    for _ in range(resamples):
        weights = [0] * keys
        for index in draw.choices(population, k=len(key_of)):
            weights[key_of[index]] += 1
        for name, value in estimate(weights).items():
            bucket = found.setdefault(name, [])
            if value is not None:
                bucket.append(value)
    return found
