"""The similarity of two texts: normalized Indel similarity (rapidfuzz.fuzz.ratio / 100).

Reference values are worked by hand: 2 * LCS / (len(a) + len(b)) after `normalize_text`.
"""

from __future__ import annotations

import pytest

from pytest_llmeval.score.text import similarity


def test_equal_and_disjoint_texts() -> None:
    assert similarity("Paris", " paris! ") == 1.0
    assert similarity("abc", "xyz") == 0.0
    assert similarity("abc", "") == 0.0


def test_indel_similarity_value() -> None:
    # "the cat sat" (11) vs "the cat sits" (12): longest common subsequence "the cat st"
    # (10), so 2 * 10 / 23.
    assert similarity("the cat sat", "the cat sits") == pytest.approx(20 / 23)


def test_two_empty_texts_have_no_similarity() -> None:
    # Nothing to compare: undefined, not 1.0 (two backends that both said nothing are not alike).
    assert similarity("", "") is None
    assert similarity("", "...") is None  # empty after normalisation


def test_long_texts_are_compared_in_full() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 200  # ~9 kB
    assert similarity(text, text + "!") == 1.0
    assert similarity(text, text + " extra") == pytest.approx(2 * 8998 / (8998 + 9005))
