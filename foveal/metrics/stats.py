"""Statistics for comparing attacks and models on the same images: intervals, paired tests,
verdicts (the reproductions state their claims with these).

A claim states its test before it runs (:class:`Test`) and gets one of four verdicts:

- ``holds``: the 95% interval of the claimed quantity lies entirely on the claimed side of its
  threshold (it excludes the contrary);
- ``does not hold``: the interval lies entirely on the other side;
- ``inconclusive``: the interval straddles the threshold (the data cannot tell);
- ``n/a``: a figure or a row reported without a test.

Comparisons of two attacks or two models are *paired*: both are measured on the same images,
so the interval of the difference comes from a bootstrap over images of the per-image
outcomes, and McNemar's exact test counts the images on which the two disagree. Written here:
a few lines of numpy (scipy's ``binomtest`` for McNemar); no library ships this verdict logic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "VERDICTS",
    "Estimate",
    "Test",
    "as_bits",
    "bootstrap",
    "mcnemar",
    "paired_difference",
    "proportion",
    "verdict",
]

#: The verdicts of a claim, in the order the index counts them.
VERDICTS = ("holds", "does not hold", "inconclusive", "n/a")

#: Bootstrap resamples (the interval's Monte-Carlo error is about 0.1 point at n = 500).
RESAMPLES = 4000


@dataclass(frozen=True)
class Estimate:
    """A measured quantity with its 95% interval (``low``, ``high``) and, for paired
    comparisons, McNemar's exact two-sided p-value."""

    value: float
    low: float
    high: float
    n: int
    p_value: float | None = None

    def text(self, scale: float = 100.0, unit: str = " points", digits: int = 1) -> str:
        """E.g. ``"12.4 points [8.1, 16.6], n = 500, McNemar p = 2e-09"``."""
        f = f"{{:.{digits}f}}"
        out = (
            f"{f.format(scale * self.value)}{unit} [{f.format(scale * self.low)}, "
            f"{f.format(scale * self.high)}], n = {self.n}"
        )
        if self.p_value is not None:
            out += f", McNemar p = {self.p_value:.1g}"
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n,
                "p_value": self.p_value}  # fmt: skip


@dataclass(frozen=True)
class Test:
    """What a claim tests, stated before it runs.

    ``quantity`` is compared with ``threshold``: ``direction=">"`` claims it exceeds the
    threshold, ``"<"`` that it stays below, ``"within"`` that it lies in
    ``[-threshold, threshold]`` (equivalence, e.g. "comparable": within 5 points).
    """

    quantity: str
    direction: str
    threshold: float
    method: str

    def describe(self, scale: float = 100.0, unit: str = " points") -> str:
        t = f"{scale * self.threshold:g}{unit}"
        claim = {
            ">": f"{self.quantity} > {t}",
            "<": f"{self.quantity} < {t}",
            "within": f"|{self.quantity}| <= {t}",
        }[self.direction]
        return f"{claim}; {self.method}, 95% interval"


def verdict(test: Test, estimate: Estimate | None) -> str:
    """The verdict of ``test`` given the interval of ``estimate`` (see the module docstring).

    Example:
        >>> t = Test("gap", ">", 0.10, "paired bootstrap")
        >>> verdict(t, Estimate(0.2, 0.15, 0.25, 500)), verdict(t, Estimate(0.1, 0.05, 0.15, 500))
        ('holds', 'inconclusive')
        >>> verdict(Test("diff", "within", 0.05, "bootstrap"), Estimate(0.08, 0.06, 0.1, 500))
        'does not hold'
    """
    if estimate is None:
        return "n/a"
    lo, hi, t = estimate.low, estimate.high, test.threshold
    if test.direction == ">":
        return "holds" if lo > t else "does not hold" if hi <= t else "inconclusive"
    if test.direction == "<":
        return "holds" if hi < t else "does not hold" if lo >= t else "inconclusive"
    if test.direction == "within":
        if -t <= lo and hi <= t:
            return "holds"
        return "does not hold" if hi < -t or lo > t else "inconclusive"
    raise ValueError(f"direction must be '>', '<' or 'within'; got {test.direction!r}")


def as_bits(values: Any) -> np.ndarray:
    """Per-image outcomes as a float array: a ``"0110"`` string, bools, or numbers."""
    if isinstance(values, str):
        return np.frombuffer(values.encode(), dtype=np.uint8).astype(np.float64) - ord("0")
    return np.asarray(values, dtype=np.float64).reshape(-1)


def bootstrap(
    statistic: Callable[..., float],
    samples: Sequence[Any],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """``statistic`` of per-image ``samples`` (arrays of equal length, resampled together) with
    a percentile-bootstrap 95% interval.

    Example:
        >>> e = bootstrap(lambda a: float(a.mean()), [as_bits("1" * 80 + "0" * 20)])
        >>> round(e.value, 2), e.low < 0.8 < e.high, e.n
        (0.8, True, 100)
    """
    arrays = [as_bits(s) for s in samples]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError(
            f"samples must be non-empty and of equal length; got {[len(a) for a in arrays]}"
        )
    value = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    stats = np.array([statistic(*(a[i] for a in arrays)) for i in idx])
    low, high = np.percentile(stats, [2.5, 97.5])
    return Estimate(value, float(low), float(high), n)


def proportion(outcomes: Any, **kwargs: Any) -> Estimate:
    """A rate (e.g. accuracy) over images, with its bootstrap interval."""
    return bootstrap(lambda a: float(a.mean()), [outcomes], **kwargs)


def mcnemar(a: Any, b: Any) -> float:
    """McNemar's exact two-sided p-value for paired binary outcomes ``a`` and ``b``.

    Example:
        >>> round(mcnemar("1111111110", "0000000001"), 4)
        0.0215
    """
    from scipy.stats import binomtest

    x, y = as_bits(a), as_bits(b)
    only_a = int(((x == 1) & (y == 0)).sum())
    only_b = int(((x == 0) & (y == 1)).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_difference(a: Any, b: Any, **kwargs: Any) -> Estimate:
    """Mean of ``a`` minus mean of ``b`` over the same images, bootstrap interval, and (for
    binary outcomes) McNemar's p-value.

    Example:
        >>> e = paired_difference("1" * 60 + "0" * 40, "1" * 40 + "0" * 60)
        >>> round(e.value, 2), e.low > 0, e.p_value < 1e-4
        (0.2, True, True)
    """
    x, y = as_bits(a), as_bits(b)
    est = bootstrap(lambda u, v: float(u.mean() - v.mean()), [x, y], **kwargs)
    binary = bool(np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all())
    p = mcnemar(x, y) if binary else None
    return Estimate(est.value, est.low, est.high, est.n, p)
