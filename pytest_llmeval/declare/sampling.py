"""Choosing which rows of a task run under `--limit N`: seeded, nested, stratified when labelled.

Sampling is a pure function of (row count, labels, limit, seed), so every xdist worker and every
rerun picks the same rows; the chosen indices come back sorted, keeping item order stable.

Samples are nested: `--limit N` takes the first N rows of one seeded order of the whole
dataset, so `--limit 100` contains every row of `--limit 40` (and reuses its cached
generations) instead of drawing unrelated rows.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence


def sample_indices(
    n_rows: int, limit: int | None, seed: int, labels: Sequence[Hashable] | None = None
) -> list[int]:
    """Indices of the rows to keep, ascending: the first `limit` of `sample_order`."""
    if labels is not None and len(labels) != n_rows:
        raise ValueError(f"got {len(labels)} labels for {n_rows} rows")
    if limit is not None and limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}")
    if limit is None or limit >= n_rows:
        return list(range(n_rows))
    return sorted(sample_order(n_rows, seed, labels)[:limit])


def sample_order(n_rows: int, seed: int, labels: Sequence[Hashable] | None = None) -> list[int]:
    """Every row index once, in the seeded order that `--limit` takes a prefix of.

    Without labels: a seeded shuffle. With labels (one per row): each label's rows are shuffled
    on their own, then dealt round-robin, one per label in turn (labels sorted by repr), so
    every prefix is balanced: `--limit 100` on a two-label task gives 50/50, an odd limit gives
    the extra row to the first label, and a label that runs out leaves its turns to the others.
    """
    rng = random.Random(seed)
    if labels is None:
        order = list(range(n_rows))
        rng.shuffle(order)
        return order
    strata: dict[Hashable, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        strata[label].append(index)
    # Sorting by repr gives the same stratum order on every run whatever the label types.
    queues = [strata[key] for key in sorted(strata, key=repr)]
    for queue in queues:
        rng.shuffle(queue)
    order = []
    for turn in range(max(map(len, queues), default=0)):
        order.extend(queue[turn] for queue in queues if turn < len(queue))
    return order
