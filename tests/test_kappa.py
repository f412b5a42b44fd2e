"""Cohen's kappa: checked against statsmodels (`statsmodels.stats.inter_rater.cohens_kappa`
on the contingency table of the same labels), values computed once and written here."""

from __future__ import annotations

import pytest

from pytest_llmeval.analyze.stats import cohens_kappa

# A skewed binary sample (17 of 20 benign on both sides): raw agreement 0.9, kappa 0.444.
SKEWED_PRIMARY = ["non-toxic"] * 17 + ["toxic", "toxic", "non-toxic"]
SKEWED_REFERENCE = ["non-toxic"] * 17 + ["toxic", "non-toxic", "toxic"]

FINE_PRIMARY = ["hate"] * 5 + ["harassment"] * 4 + ["none"] * 9 + ["hate", "none"]
FINE_REFERENCE = ["hate"] * 4 + ["harassment"] * 4 + ["none"] * 9 + ["hate", "harassment", "hate"]


def test_kappa_matches_statsmodels_on_a_skewed_binary_sample() -> None:
    assert cohens_kappa(list(zip(SKEWED_PRIMARY, SKEWED_REFERENCE, strict=True))) == (
        pytest.approx(0.44444444444444436)
    )


def test_kappa_matches_statsmodels_on_three_labels() -> None:
    pairs = list(zip(FINE_PRIMARY, FINE_REFERENCE, strict=True))
    assert cohens_kappa(pairs) == pytest.approx(0.6062992125984252)


def test_kappa_of_systematic_disagreement_is_negative() -> None:
    assert cohens_kappa([("a", "b"), ("b", "a")] * 3) == pytest.approx(-1.0)


def test_kappa_is_undefined_without_data_or_when_chance_agreement_is_certain() -> None:
    assert cohens_kappa([]) is None
    # Both sides always say the same one label: expected agreement 1, kappa 0/0.
    assert cohens_kappa([("x", "x")] * 5) is None
    # Each side always says its own one label: expected agreement 0, kappa 0.
    assert cohens_kappa([("x", "y")] * 5) == 0.0
