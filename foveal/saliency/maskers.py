"""Maskers: turn saliency maps into binary regions (a foreground and its complement).

Each rule is a function returning a float {0,1} mask of the map's shape, and a small class
returning :class:`Regions` (foreground, background) ready to become the regions of a
perturbation set:

- :func:`half_range` — Tong et al. 2020: foreground = pixels above ``t = 0.5 (s_min + s_max)``.
- :func:`binarize` — Dong et al. 2020: min-max normalise each map to [0,1], keep ``m >= phi``.
- :func:`top_k_mass` — Redgrave & Czajka 2024 (Eq. 7-8): the smallest set of elements holding at
  least half (``fraction``) of the total ``|map|`` mass.
- :func:`percentile` — keep the ``percent``% highest elements (rank-based).
- :class:`GroundTruthMasker` — dataset masks as regions.

Written here: each rule is a few tensor operations that must work batched, per image, on
any device; no library provides them. Masks are computed without gradients (they are
decisions, not differentiable quantities).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from foveal._validation import check_mask, check_probability
from foveal.registry import Registry

__all__ = [
    "MASKERS",
    "Binarize",
    "GroundTruthMasker",
    "HalfRange",
    "Masker",
    "Percentile",
    "Regions",
    "TopKMass",
    "binarize",
    "half_range",
    "percentile",
    "top_k_mass",
]


def _check_maps(maps: object, name: str = "maps") -> torch.Tensor:
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(maps).__name__}")
    if maps.ndim != 4:
        raise ValueError(f"{name} must have shape (N,1,H,W) or (N,C,H,W); got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {maps.dtype}")
    if maps.numel() and not bool(torch.isfinite(maps).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return maps


@dataclass(frozen=True)
class Regions:
    """A binary partition of each image: ``foreground`` and its complement ``background``.

    Both are float {0,1} tensors of shape (N,1,H,W) or (N,C,H,W) with
    ``foreground + background == 1``.

    Example:
        >>> r = Regions.from_foreground(torch.tensor([[[[1.0, 0.0]]]]))
        >>> r.background
        tensor([[[[0., 1.]]]])
    """

    foreground: torch.Tensor
    background: torch.Tensor

    def __post_init__(self) -> None:
        if self.foreground.shape != self.background.shape:
            raise ValueError(
                f"foreground and background must have the same shape; got "
                f"{tuple(self.foreground.shape)} and {tuple(self.background.shape)}"
            )
        if self.foreground.ndim != 4:
            raise ValueError(
                "regions must have shape (N,1,H,W) or (N,C,H,W); got "
                f"{tuple(self.foreground.shape)}"
            )
        if not bool(((self.foreground + self.background) == 1).all()):
            raise ValueError("background must be the complement (1 - foreground) of foreground")

    @classmethod
    def from_foreground(cls, foreground: torch.Tensor) -> Regions:
        """Regions from a {0,1} foreground mask (any of the mask shapes)."""
        fg = _check_maps(foreground, "foreground").float()
        bad = (fg != 0) & (fg != 1)
        if bool(bad.any()):
            raise ValueError(f"foreground must be binary (0/1); found value {float(fg[bad][0]):g}")
        return cls(fg, 1.0 - fg)

    def swap(self) -> Regions:
        """The same partition with foreground and background exchanged."""
        return Regions(self.background, self.foreground)

    def expand(self, channels: int) -> Regions:
        """Broadcast single-channel regions to ``channels`` channels (N,C,H,W)."""
        if self.foreground.shape[1] == channels:
            return self
        if self.foreground.shape[1] != 1:
            raise ValueError(
                f"can only expand single-channel regions; these have {self.foreground.shape[1]}"
            )
        n, _, h, w = self.foreground.shape
        return Regions(
            self.foreground.expand(n, channels, h, w).contiguous(),
            self.background.expand(n, channels, h, w).contiguous(),
        )

    def fraction(self) -> torch.Tensor:
        """Fraction of foreground elements per image, shape (N,)."""
        return self.foreground.flatten(1).mean(dim=1)

    def to(self, device: torch.device | str) -> Regions:
        return Regions(self.foreground.to(device), self.background.to(device))


# ----------------------------------------------------------------------------- functions
@torch.no_grad()
def half_range(maps: torch.Tensor) -> torch.Tensor:
    """Tong et al.'s (2020) partition: foreground where ``s > 0.5 (s_min + s_max)`` of each image.

    A constant map has no pixel above its threshold: its foreground is empty.

    Shape:
        (N,1,H,W) or (N,C,H,W) -> same, float {0,1}.

    Example:
        >>> half_range(torch.tensor([[[[0.0, 0.4, 0.6, 1.0]]]]))
        tensor([[[[0., 0., 1., 1.]]]])
    """
    maps = _check_maps(maps)
    flat = maps.flatten(1)
    t = 0.5 * (flat.min(dim=1, keepdim=True).values + flat.max(dim=1, keepdim=True).values)
    return (flat > t).to(maps.dtype).view_as(maps)


@torch.no_grad()
def binarize(maps: torch.Tensor, phi: float = 4 / 12) -> torch.Tensor:
    """Dong et al.'s (2020) binarisation: normalise each map to [0,1] (min-max), keep ``m >= phi``.

    Args:
        maps: saliency maps (N,1,H,W) or (N,C,H,W).
        phi: binarisation factor in [0,1] (Dong et al.'s (2020) default 4/12). A constant map
            normalises to 0, so its mask is all ones for ``phi = 0`` and empty otherwise.

    Example:
        >>> binarize(torch.tensor([[[[2.0, 3.0, 4.0, 6.0]]]]), phi=0.5)
        tensor([[[[0., 0., 1., 1.]]]])
    """
    maps = _check_maps(maps)
    phi = check_probability(phi, "phi")
    flat = maps.flatten(1).double()
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    norm = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, 1.0), 0.0)
    return (norm >= phi).to(maps.dtype).view_as(maps)


@torch.no_grad()
def top_k_mass(maps: torch.Tensor, fraction: float = 0.5) -> torch.Tensor:
    """Redgrave & Czajka 2024, Eq. 7-8: the smallest set of elements whose ``|map|`` holds >=
    ``fraction`` of the total mass of each image.

    Elements are taken in decreasing order of ``|map|`` (ties by position), so the chosen
    set of size k holds the largest mass of any set of size k, and k is the smallest size
    that reaches ``fraction * total``. Sums are in float64. An all-zero map selects nothing.
    Over (N,C,H,W) maps (a gradient per channel, as in Eq. 7) elements are (c, h, w).

    Args:
        maps: (N,1,H,W) or (N,C,H,W) maps; absolute values are used.
        fraction: mass fraction in [0,1] (default 0.5, the paper's half).

    Example:
        >>> top_k_mass(torch.tensor([[[[4.0, 1.0, 3.0, 2.0]]]]))
        tensor([[[[1., 0., 1., 0.]]]])
    """
    maps = _check_maps(maps)
    fraction = check_probability(fraction, "fraction")
    flat = maps.flatten(1).abs().double()
    n, m = flat.shape
    if m == 0:
        return torch.zeros_like(maps)
    values, order = torch.sort(flat, dim=1, descending=True, stable=True)
    csum = values.cumsum(dim=1)
    need = fraction * flat.sum(dim=1, keepdim=True)
    # k = 1 + number of prefixes that are still short of the target.
    k = (csum < need).sum(dim=1, keepdim=True) + (need > 0).long()
    k = torch.minimum(k, torch.full_like(k, m))
    ranks = torch.arange(m, device=maps.device).expand(n, m)
    keep_sorted = (ranks < k).to(maps.dtype)
    out = torch.zeros_like(flat, dtype=maps.dtype).scatter(1, order, keep_sorted)
    return out.view_as(maps)


@torch.no_grad()
def percentile(maps: torch.Tensor, percent: float = 20.0) -> torch.Tensor:
    """Keep the ``percent``% highest-valued elements of each map (rank-based, ties by position).

    The number kept is ``ceil(percent / 100 * elements)``: the elements above the
    ``100 - percent`` percentile.

    Args:
        maps: (N,1,H,W) or (N,C,H,W) maps.
        percent: in [0, 100].

    Example:
        >>> percentile(torch.tensor([[[[4.0, 1.0, 3.0, 2.0]]]]), percent=50)
        tensor([[[[1., 0., 1., 0.]]]])
    """
    maps = _check_maps(maps)
    p = float(percent)
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percent must lie in [0, 100]; got {p:g}")
    flat = maps.flatten(1)
    n, m = flat.shape
    k = min(m, math.ceil(round(p * m / 100.0, 9)))
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    keep = (torch.arange(m, device=maps.device) < k).to(maps.dtype).expand(n, m)
    return torch.zeros_like(flat).scatter(1, order, keep).view_as(maps)


# ----------------------------------------------------------------------------- classes
MASKERS: Registry[type[Masker]] = Registry("masker")


class Masker(abc.ABC):
    """A rule mapping saliency maps (N,1|C,H,W) to :class:`Regions` of the same shape."""

    name: ClassVar[str] = ""

    def __call__(self, maps: torch.Tensor) -> Regions:
        return Regions.from_foreground(self.mask(maps))

    @abc.abstractmethod
    def mask(self, maps: torch.Tensor) -> torch.Tensor:
        """The {0,1} foreground mask of ``maps``."""


@MASKERS.register("half-range", help="Tong et al. 2020: s > 0.5 (s_min + s_max) per image")
class HalfRange(Masker):
    """Tong et al.'s (2020) half-range threshold (see :func:`half_range`)."""

    def mask(self, maps: torch.Tensor) -> torch.Tensor:
        return half_range(maps)

    def __repr__(self) -> str:
        return "HalfRange()"


@MASKERS.register("binarize", help="Dong et al. 2020: min-max normalise, keep m >= phi")
class Binarize(Masker):
    """Dong et al.'s (2020) binarisation at ``phi`` (see :func:`binarize`).

    Args:
        phi: binarisation factor in [0,1] (default 4/12).
    """

    def __init__(self, *, phi: float = 4 / 12) -> None:
        self.phi = check_probability(phi, "phi")

    def mask(self, maps: torch.Tensor) -> torch.Tensor:
        return binarize(maps, self.phi)

    def __repr__(self) -> str:
        return f"Binarize(phi={self.phi:g})"


@MASKERS.register("top-k-mass", help="Redgrave & Czajka 2024: smallest set holding half the mass")
class TopKMass(Masker):
    """Redgrave & Czajka's (2024) top-k mass rule (see :func:`top_k_mass`).

    Args:
        fraction: mass fraction (default 0.5).
    """

    def __init__(self, *, fraction: float = 0.5) -> None:
        self.fraction = check_probability(fraction, "fraction")

    def mask(self, maps: torch.Tensor) -> torch.Tensor:
        return top_k_mass(maps, self.fraction)

    def __repr__(self) -> str:
        return f"TopKMass(fraction={self.fraction:g})"


@MASKERS.register("percentile", help="keep the top percent% of elements")
class Percentile(Masker):
    """Keep the top ``percent``% elements (see :func:`percentile`).

    Args:
        percent: in [0, 100] (default 20).
    """

    def __init__(self, *, percent: float = 20.0) -> None:
        if not 0.0 <= float(percent) <= 100.0:
            raise ValueError(f"percent must lie in [0, 100]; got {percent}")
        self.percent = float(percent)

    def mask(self, maps: torch.Tensor) -> torch.Tensor:
        return percentile(maps, self.percent)

    def __repr__(self) -> str:
        return f"Percentile(percent={self.percent:g})"


@MASKERS.register("ground-truth", help="dataset masks (ignore the maps' values)")
class GroundTruthMasker(Masker):
    """Regions from dataset masks; the maps passed in only fix the expected shape.

    Args:
        masks: (N,1,H,W) {0,1} masks, in the order of the maps the masker is called with.
    """

    def __init__(self, masks: torch.Tensor) -> None:
        if not isinstance(masks, torch.Tensor):
            raise TypeError(f"masks must be a torch.Tensor; got {type(masks).__name__}")
        self.masks = masks.float()

    def mask(self, maps: torch.Tensor) -> torch.Tensor:
        maps = _check_maps(maps)
        ref = torch.empty(maps.shape[0], maps.shape[1], *maps.shape[2:])
        masks = check_mask(self.masks, ref, "masks")
        if masks.shape[1] != maps.shape[1]:
            masks = masks.expand_as(maps)
        return masks.to(device=maps.device, dtype=maps.dtype).contiguous()

    def __repr__(self) -> str:
        return f"GroundTruthMasker(n={self.masks.shape[0]})"
