"""Unit tests for pytest_llmeval.declare.sampling."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import shared_data_dir
from pytest_llmeval.declare.data import load_rows
from pytest_llmeval.declare.sampling import sample_indices
from pytest_llmeval.declare.task import DataSource


def test_same_seed_same_sample() -> None:
    first = sample_indices(1000, 50, seed=7)
    second = sample_indices(1000, 50, seed=7)
    assert first == second
    assert len(first) == 50
    assert len(set(first)) == 50
    assert all(0 <= index < 1000 for index in first)


def test_different_seeds_differ() -> None:
    assert sample_indices(1000, 50, seed=1) != sample_indices(1000, 50, seed=2)


def test_output_is_sorted() -> None:
    chosen = sample_indices(500, 100, seed=3)
    assert chosen == sorted(chosen)
    labelled = sample_indices(500, 100, seed=3, labels=[i % 3 for i in range(500)])
    assert labelled == sorted(labelled)


@pytest.mark.parametrize("limit", [None, 10, 11, 1000])
def test_limit_at_or_above_rows_returns_all(limit: int | None) -> None:
    assert sample_indices(10, limit, seed=0) == list(range(10))


def test_limit_zero_returns_nothing() -> None:
    assert sample_indices(10, 0, seed=0) == []
    assert sample_indices(10, 0, seed=0, labels=["a", "b"] * 5) == []


def test_negative_limit_raises() -> None:
    with pytest.raises(ValueError, match="-1"):
        sample_indices(10, -1, seed=0)


def test_stratified_two_labels_is_balanced() -> None:
    # 900 "neg" rows and 100 "pos" rows: a uniform sample would be ~90/10.
    labels = ["neg"] * 900 + ["pos"] * 100
    chosen = sample_indices(1000, 100, seed=0, labels=labels)
    assert len(chosen) == 100
    assert len(set(chosen)) == 100
    assert Counter(labels[i] for i in chosen) == {"neg": 50, "pos": 50}


def test_stratified_is_deterministic() -> None:
    labels = [i % 4 for i in range(400)]
    assert sample_indices(400, 40, 5, labels) == sample_indices(400, 40, 5, labels)
    assert sample_indices(400, 40, 5, labels) != sample_indices(400, 40, 6, labels)


def test_small_stratum_gives_share_to_others() -> None:
    # Three labels, limit 30 -> 10 each, but "rare" only has 4 rows: its 6 spare go elsewhere.
    labels = ["a"] * 100 + ["b"] * 100 + ["rare"] * 4
    chosen = sample_indices(len(labels), 30, seed=1, labels=labels)
    counts = Counter(labels[i] for i in chosen)
    assert len(chosen) == 30
    assert counts["rare"] == 4
    assert counts["a"] + counts["b"] == 26
    assert abs(counts["a"] - counts["b"]) <= 1


def test_odd_limit_splits_as_evenly_as_possible() -> None:
    labels = ["x", "y"] * 50
    counts = Counter(labels[i] for i in sample_indices(100, 11, seed=0, labels=labels))
    assert sorted(counts.values()) == [5, 6]


def test_labels_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="3 labels for 10 rows"):
        sample_indices(10, 5, seed=0, labels=["a", "b", "c"])


# --- nested samples (issue 9, point 18): raising --limit extends the sample ------------


def _ethos_labels() -> list[str]:
    """The real ETHOS rows' labels, as the toxicity task derives them (isHate >= 0.5)."""

    source = DataSource(files="ethos/Ethos_Dataset_Binary.csv", csv_sep=";")
    rows = load_rows(source, shared_data_dir()).rows
    return ["toxic" if float(row["isHate"]) >= 0.5 else "non-toxic" for row in rows]  # type: ignore[index]


def test_ethos_limit_40_is_inside_limit_100_and_both_are_balanced() -> None:
    labels = _ethos_labels()
    assert len(labels) == 998
    small = sample_indices(len(labels), 40, seed=0, labels=labels)
    large = sample_indices(len(labels), 100, seed=0, labels=labels)
    assert set(small) <= set(large)
    assert Counter(labels[i] for i in small) == {"toxic": 20, "non-toxic": 20}
    assert Counter(labels[i] for i in large) == {"toxic": 50, "non-toxic": 50}


def test_every_prefix_of_a_labelled_sample_is_nested_and_balanced() -> None:
    labels = ["neg"] * 900 + ["pos"] * 100
    previous: set[int] = set()
    for limit in range(0, 201, 7):
        chosen = set(sample_indices(1000, limit, seed=3, labels=labels))
        assert previous <= chosen
        counts = Counter(labels[i] for i in chosen)
        assert abs(counts["neg"] - counts["pos"]) <= 1
        previous = chosen


def test_gsm8k_limit_4_is_inside_limit_6() -> None:

    rows = load_rows(DataSource(files="gsm8k/test.jsonl"), shared_data_dir()).rows
    assert len(rows) == 1319
    four = sample_indices(len(rows), 4, seed=0)
    six = sample_indices(len(rows), 6, seed=0)
    assert len(four) == 4 and len(six) == 6
    assert set(four) <= set(six)


def test_unlabelled_samples_are_nested_for_every_limit() -> None:
    previous: set[int] = set()
    for limit in range(0, 300, 13):
        chosen = set(sample_indices(300, limit, seed=11))
        assert len(chosen) == limit
        assert previous <= chosen
        previous = chosen
