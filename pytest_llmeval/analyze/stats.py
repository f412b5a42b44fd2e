"""Pure statistics helpers for summarising eval results.

Stdlib only (no numpy/scipy) so the plugin stays light to install. Use
:func:`wilson_interval` for pass rates, :func:`percentile` / :func:`mean`
for latency and token summaries, and :func:`cohens_kappa` for agreement between two raters.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from statistics import NormalDist

__all__ = ["cohens_kappa", "mean", "percentile", "wilson_interval"]


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
