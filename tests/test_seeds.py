"""Per-(item, sample) seeds: a pure function of the task seed, the item id and the sample."""

from __future__ import annotations

from pytest_llmeval.declare.seeds import SEED_BITS, sample_seed


def test_seed_is_stable_and_depends_on_task_seed_item_and_sample() -> None:
    base = sample_seed(0, "gsm8k/test/0042", 0)
    # A literal: the derivation is part of what a cached sampled generation means.
    assert base == 776961359
    assert sample_seed(0, "gsm8k/test/0042", 0) == base
    assert len({base, sample_seed(1, "gsm8k/test/0042", 0), sample_seed(0, "gsm8k/test/0043", 0),
                sample_seed(0, "gsm8k/test/0042", 1)}) == 4  # fmt: skip


def test_seeds_fit_every_engine() -> None:
    seeds = [sample_seed(7, f"t/test/{i:04d}", s) for i in range(200) for s in range(3)]
    assert all(0 <= seed < 2**SEED_BITS for seed in seeds)
    assert len(set(seeds)) == len(seeds)
