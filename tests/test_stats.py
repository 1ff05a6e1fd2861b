"""Statistics behind reproduction verdicts: intervals that cover, McNemar, the verdict rules."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from foveal.metrics.stats import (
    Estimate,
    as_bits,
    bootstrap,
    mcnemar,
    paired_difference,
    proportion,
    verdict,
)
from foveal.metrics.stats import (
    Test as ClaimTest,
)


@pytest.mark.parametrize(
    ("direction", "threshold", "interval", "expected"),
    [
        (">", 0.1, (0.12, 0.2), "holds"),
        (">", 0.1, (0.0, 0.1), "does not hold"),
        (">", 0.1, (0.05, 0.15), "inconclusive"),
        ("<", 0.1, (0.0, 0.09), "holds"),
        ("<", 0.1, (0.1, 0.3), "does not hold"),
        ("<", 0.1, (0.05, 0.15), "inconclusive"),
        ("within", 0.05, (-0.04, 0.05), "holds"),
        ("within", 0.05, (0.06, 0.1), "does not hold"),
        ("within", 0.05, (-0.2, -0.06), "does not hold"),
        ("within", 0.05, (0.0, 0.08), "inconclusive"),
    ],
)
def test_verdict_reads_the_interval_against_the_threshold(
    direction: str, threshold: float, interval: tuple[float, float], expected: str
) -> None:
    lo, hi = interval
    est = Estimate((lo + hi) / 2, lo, hi, 100)
    assert verdict(ClaimTest("q", direction, threshold, "bootstrap"), est) == expected


def test_verdict_without_an_estimate_and_bad_direction() -> None:
    assert verdict(ClaimTest("q", ">", 0.0, "m"), None) == "n/a"
    with pytest.raises(ValueError, match="direction.*'>='"):
        verdict(ClaimTest("q", ">=", 0.0, "m"), Estimate(0.0, 0.0, 0.0, 1))


def test_as_bits_reads_strings_bools_and_numbers() -> None:
    assert as_bits("0110").tolist() == [0.0, 1.0, 1.0, 0.0]
    assert as_bits([True, False]).tolist() == [1.0, 0.0]
    assert as_bits(np.array([[0.5], [2.0]])).tolist() == [0.5, 2.0]


def test_bootstrap_interval_covers_the_true_rate() -> None:
    """Of 40 samples of 300 Bernoulli(0.7) outcomes, the 95% interval covers 0.7 about 38
    times; fewer than 34 would mean a broken interval (binomial tail ~1e-3)."""
    rng = np.random.default_rng(5)
    covered = 0
    widths = []
    for k in range(40):
        est = proportion(rng.random(300) < 0.7, resamples=1000, seed=k)
        covered += est.low <= 0.7 <= est.high
        widths.append(est.high - est.low)
    assert covered >= 34
    # the width of a 95% interval is about 2 * 1.96 * sqrt(0.21 / 300) = 0.104
    assert 0.08 < float(np.mean(widths)) < 0.13


def test_bootstrap_is_reproducible_and_checks_its_samples() -> None:
    a = as_bits("1101" * 25)
    assert bootstrap(lambda x: float(x.mean()), [a], seed=3) == bootstrap(
        lambda x: float(x.mean()), [a], seed=3
    )
    with pytest.raises(ValueError, match="equal length"):
        bootstrap(lambda x, y: 0.0, [a, a[:10]])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap(lambda x: 0.0, [[]])


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.6
    b = rng.random(200) < 0.5
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    assert mcnemar(a, b) == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert mcnemar(a, b) == pytest.approx(mcnemar(b, a))  # two-sided: symmetric
    assert mcnemar(a, a) == 1.0  # no discordant pair


def test_paired_difference_pairs_the_images() -> None:
    # the same 40-image gap, once on images that agree elsewhere and once shuffled: the paired
    # interval is narrow when the outcomes are strongly correlated
    a = as_bits("1" * 60 + "0" * 40)
    b = as_bits("1" * 40 + "0" * 60)
    est = paired_difference(a, b, resamples=2000)
    assert est.value == pytest.approx(0.2)
    assert 0.1 < est.low < 0.2 < est.high < 0.3
    assert est.p_value == pytest.approx(2 * 0.5**20)  # 20 discordant pairs, all one way
    scores = paired_difference([0.5, 0.7, 0.9], [0.1, 0.2, 0.3], resamples=200)
    assert scores.p_value is None  # McNemar only for binary outcomes
    assert scores.value == pytest.approx(0.5)
    assert "McNemar" in est.text() and "n = 100" in est.text()
