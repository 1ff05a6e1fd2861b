"""Saliency-shift statistics (the SMD/SPD paper, section 4.1, Table 1).

Do adversarial perturbations move the saliency map more than the difference between two
natural images? For each clean image ``i`` with adversarial version ``a_i`` and another clean
image ``j = pi(i)`` (a random derangement, so no image is paired with itself):

- ``adversarial distances``: ``||s(x_i) - s(a_i)||``;
- ``different-image distances``: ``||s(x_i) - s(x_j)||``;

and a two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``) of whether both samples come
from the same distribution (the SMD/SPD paper uses the non-parametric test to avoid assuming
normality). Distances are root-mean-square over the pixels (``||.||_2 / sqrt(H W)``, so that they do
not depend on the image size; ``reduction="l2"`` gives the plain L2 norm).

Written by hand around scipy: a few tensor reductions and one library call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from foveal.batching import map_batches

__all__ = ["ShiftStatistics", "map_distances", "saliency_shift", "saliency_shift_of"]

REDUCTIONS = ("rms", "l2")


@dataclass(frozen=True)
class ShiftStatistics:
    """Result of :func:`saliency_shift`.

    Attributes:
        n: number of image pairs.
        adversarial_mean, adversarial_std: distances between clean and adversarial maps.
        different_mean, different_std: distances between maps of different clean images.
        u_statistic: Mann-Whitney U of the adversarial sample.
        p_value: two-sided p-value.
        effect: common-language effect size ``U / (n_1 n_2)``: the probability that an
            adversarial distance exceeds a different-image distance (0.5 = no difference).
    """

    n: int
    adversarial_mean: float
    adversarial_std: float
    different_mean: float
    different_std: float
    u_statistic: float
    p_value: float
    effect: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def map_distances(a: torch.Tensor, b: torch.Tensor, *, reduction: str = "rms") -> torch.Tensor:
    """Per-pair distances (N,) between maps ``a`` and ``b`` (N,1,H,W) or (N,C,H,W).

    Example:
        >>> map_distances(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
        tensor([1.])
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"maps must have equal (N,C,H,W) shapes; got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")  # fmt: skip
    d = (a.double() - b.double()).flatten(1).norm(dim=1)
    if reduction == "rms":
        d = d / math.sqrt(a.shape[2] * a.shape[3])
    return d.float()


def _derangement(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation without fixed points (a random cyclic shift of a shuffle)."""
    perm = torch.randperm(n, generator=gen)
    shift = int(torch.randint(1, n, (1,), generator=gen))
    out = torch.empty(n, dtype=torch.long)
    out[perm] = perm.roll(shift)
    return out


def saliency_shift(
    clean_maps: torch.Tensor,
    adversarial_maps: torch.Tensor,
    *,
    reduction: str = "rms",
    seed: int = 0,
) -> ShiftStatistics:
    """Compare saliency shifts caused by an attack with differences between clean images.

    Args:
        clean_maps: saliency maps of clean images (N,1,H,W) (N >= 2).
        adversarial_maps: maps of their adversarial versions, same order.
        reduction: ``"rms"`` (default) or ``"l2"`` (see the module docstring).
        seed: seeds the pairing of different clean images.

    Returns:
        :class:`ShiftStatistics`.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> clean = torch.rand(50, 1, 8, 8, generator=gen)
        >>> stats = saliency_shift(clean, clean + 0.01)
        >>> stats.adversarial_mean < stats.different_mean and stats.p_value < 1e-6
        True
    """
    from scipy.stats import mannwhitneyu

    if clean_maps.shape != adversarial_maps.shape:
        raise ValueError(
            f"clean_maps {tuple(clean_maps.shape)} and adversarial_maps "
            f"{tuple(adversarial_maps.shape)} must have the same shape"
        )
    n = clean_maps.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 images; got {n}")
    a = clean_maps.detach().cpu()
    gen = torch.Generator().manual_seed(seed)
    adv = map_distances(a, adversarial_maps.detach().cpu(), reduction=reduction)
    diff = map_distances(a, a[_derangement(n, gen)], reduction=reduction)
    test = mannwhitneyu(adv.numpy(), diff.numpy(), alternative="two-sided")
    u = float(test.statistic)
    return ShiftStatistics(
        n=n,
        adversarial_mean=float(adv.mean()),
        adversarial_std=float(adv.std()),
        different_mean=float(diff.mean()),
        different_std=float(diff.std()),
        u_statistic=u,
        p_value=float(test.pvalue),
        effect=u / (n * n),
    )


def saliency_shift_of(
    saliency: Callable[[torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    *,
    batch_size: int = 256,
    **kwargs: Any,
) -> ShiftStatistics:
    """:func:`saliency_shift` on the maps a saliency method gives for ``clean`` and
    ``adversarial`` images (e.g. :class:`~foveal.saliency.LearnedSaliency`, which explains the
    predicted class of each image)."""

    def maps(x: torch.Tensor) -> torch.Tensor:
        return map_batches(
            lambda b: saliency(b["image"]).detach().cpu(), {"image": x}, batch_size=batch_size
        )

    return saliency_shift(maps(clean), maps(adversarial), **kwargs)
