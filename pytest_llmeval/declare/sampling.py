"""Choosing which rows of a task run under `--limit N`: seeded, stratified when labelled.

Sampling is a pure function of (row count, labels, limit, seed), so every xdist worker and every
rerun picks the same rows; the chosen indices come back sorted, keeping item order stable.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence


def sample_indices(
    n_rows: int, limit: int | None, seed: int, labels: Sequence[Hashable] | None = None
) -> list[int]:
    """Indices of the rows to keep, ascending.

    Without labels: a seeded uniform sample of `limit` rows. With labels (one per row): a
    balanced sample, `limit` split as evenly as possible across labels (so `--limit 100` on a
    two-label task gives 50/50); a label with too few rows gives its share to the others.
    """
    if labels is not None and len(labels) != n_rows:
        raise ValueError(f"got {len(labels)} labels for {n_rows} rows")
    if limit is None or limit >= n_rows:
        return list(range(n_rows))
    if limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}")
    rng = random.Random(seed)
    if labels is None:
        return sorted(rng.sample(range(n_rows), limit))
    strata: dict[Hashable, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        strata[label].append(index)
    quotas = _balanced_quotas({key: len(rows) for key, rows in strata.items()}, limit)
    chosen: list[int] = []
    # Sorting by repr gives the same stratum order on every run whatever the label types.
    for key in sorted(strata, key=repr):
        chosen.extend(rng.sample(strata[key], quotas[key]))
    return sorted(chosen)


def _balanced_quotas(sizes: dict[Hashable, int], limit: int) -> dict[Hashable, int]:
    quotas = dict.fromkeys(sizes, 0)
    remaining = limit
    open_keys = sorted(sizes, key=repr)
    while remaining > 0 and open_keys:
        share, extra = divmod(remaining, len(open_keys))
        for position, key in enumerate(list(open_keys)):
            want = share + (1 if position < extra else 0)
            take = min(want, sizes[key] - quotas[key])
            quotas[key] += take
            remaining -= take
        open_keys = [key for key in open_keys if quotas[key] < sizes[key]]
    return quotas
