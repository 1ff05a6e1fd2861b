"""Dong et al.'s (2020) superpixel subspace: delta constant per superpixel, zero outside a crop.

A :class:`Superpixel` set is the intersection of three constraints:

- a linear subspace: ``delta`` takes one value per *cell* — a superpixel (given as integer ids
  (N,H,W), e.g. from :func:`foveal.saliency.slic_superpixels`) restricted to the crop mask —
  and is zero outside the crop (the binarised attention map of SAI-FGM);
- a ball, Linf or L2, of radius ``eps``;
- the box ``0 <= x + delta <= 1``.

Channels. ``channels="per-channel"`` (default) gives each cell one value per colour channel
(C values per superpixel), as the authors' released code does (its noise tensor has shape
(N, C, K)); ``channels="shared"`` gives one value per cell shared by all channels (a grey
perturbation), the literal reading of "a noise vector whose length equals the superpixel number".

Geometry (written here; no library offers it). For a delta in the subspace with cell values
``c_k`` on ``m_k`` pixels, ``||delta||_2^2 = sum_k m_k c_k^2``: in the weighted coordinates
``w_k = sqrt(m_k) c_k`` the pixel metric is Euclidean. The Euclidean projection of any ``v``
onto a convex set inside the subspace equals the projection of its orthogonal projection onto
the subspace (the cell means), so the exact projection is: cell means -> exact ball-and-box
projection in weighted coordinates (:func:`~foveal.threats.geometry.project_l2_box`; a clamp for
Linf) -> fill back. The box becomes a box on cell values, ``[-min_cell x, 1 - max_cell x]``.
The steepest-ascent direction of a gradient ``g`` is computed inside the subspace: cell sums
``s_k`` of ``g``; Linf: ``sign(s_k)``; L2: ``c_k = s_k / m_k`` normalised to unit pixel norm.

Example:
    >>> import torch
    >>> ids = torch.arange(16).view(1, 4, 4) // 8          # two superpixels: top, bottom
    >>> bound = Superpixel(ids, 0.5).bind(torch.full((1, 3, 4, 4), 0.5))
    >>> delta = bound.project(torch.randn(1, 3, 4, 4))
    >>> bool(bound.contains(delta).all()), int(delta[0, 0, :2].unique().numel())
    (True, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from foveal._validation import check_mask
from foveal.threats.base import BoundThreat, GeneratorLike, Threat, draw
from foveal.threats.geometry import project_l2_box
from foveal.threats.sets import (
    EpsLike,
    _check_eps_like,
    _eps_column,
    _eps_repr,
    _index,
    _take,
    parse_norm,
)

__all__ = ["CHANNEL_MODES", "BoundSuperpixel", "Superpixel"]

#: Accepted values of ``channels``.
CHANNEL_MODES = ("per-channel", "shared")

_TINY = 1e-30


class Superpixel(Threat):
    """Perturbations constant per superpixel (per channel), zero outside ``mask``, in a ball.

    Args:
        ids: superpixel ids (N,H,W), integers >= 0 (any labelling; need not be contiguous,
            but the number of cells is ``max(ids) + 1``).
        eps: radius of the ball, a number or a per-sample tensor (N,); >= 0.
        norm: ``"l2"`` (default, SAI-FGM's) or ``"linf"``.
        mask: crop (N,1,H,W) in {0,1}; pixels outside never change. None: no crop.
        channels: ``"per-channel"`` (one value per superpixel and channel, default) or
            ``"shared"`` (one value per superpixel for all channels).

    Shape:
        binds to images (N,C,H,W) whose H, W match ``ids``.

    Example:
        >>> ids = torch.zeros(1, 4, 4, dtype=torch.long); ids[..., 2:] = 1
        >>> crop = torch.ones(1, 1, 4, 4); crop[..., 0, :] = 0
        >>> bound = Superpixel(ids, 1.0, mask=crop).bind(torch.full((1, 3, 4, 4), 0.5))
        >>> d = bound.project(torch.ones(1, 3, 4, 4))
        >>> float(d[..., 0, :].abs().max()), round(float(d.norm()), 4)
        (0.0, 1.0)
    """

    def __init__(
        self,
        ids: torch.Tensor,
        eps: EpsLike = 0.5,
        *,
        norm: str = "l2",
        mask: torch.Tensor | None = None,
        channels: str = "per-channel",
    ) -> None:
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"ids must be a torch.Tensor; got {type(ids).__name__}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"ids must be an integer tensor; got dtype {ids.dtype}")
        if ids.ndim != 3:
            raise ValueError(f"ids must have shape (N,H,W); got shape {tuple(ids.shape)}")
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError(f"ids must be >= 0; observed min={int(ids.min())}")
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {CHANNEL_MODES}; got {channels!r}")
        if mask is not None:
            if not isinstance(mask, torch.Tensor):
                raise TypeError(f"mask must be a torch.Tensor or None; got {type(mask).__name__}")
            ref = torch.empty((ids.shape[0], 1, *ids.shape[1:]))
            check_mask(mask, ref, "mask")
            mask = mask.detach()
        self.ids = ids.detach()
        self.eps = _check_eps_like(eps, "eps")
        if isinstance(self.eps, torch.Tensor) and self.eps.shape[0] != ids.shape[0]:
            raise ValueError(
                f"eps has {self.eps.shape[0]} per-sample values but ids has {ids.shape[0]} samples"
            )
        self.norm = parse_norm(norm)
        self.mask = mask
        self.channels = channels

    def bind_checked(self, x: torch.Tensor) -> BoundSuperpixel:
        n, _, h, w = x.shape
        if tuple(self.ids.shape) != (n, h, w):
            raise ValueError(
                f"ids must have shape ({n},{h},{w}) to match images; got {tuple(self.ids.shape)}"
            )
        if self.mask is None:
            mask = torch.ones((n, 1, h, w), device=x.device, dtype=x.dtype)
        else:
            mask = check_mask(self.mask, x[:, :1], "mask").to(device=x.device, dtype=x.dtype)
        eps = _eps_column(self.eps, n, "eps", x)
        return BoundSuperpixel(
            x, self.ids.to(x.device), mask, eps, self.norm, self.channels == "shared"
        )

    def subset(self, index: torch.Tensor | Sequence[int] | slice) -> Superpixel:
        idx = _index(index)
        return Superpixel(
            self.ids[idx],
            _take(self.eps, idx),
            norm=self.norm,
            mask=None if self.mask is None else self.mask[idx],
            channels=self.channels,
        )

    def __repr__(self) -> str:
        crop = "none" if self.mask is None else "mask"
        return (
            f"Superpixel(eps={_eps_repr(self.eps)}, norm={self.norm!r}, crop={crop}, "
            f"channels={self.channels!r})"
        )


class BoundSuperpixel(BoundThreat):
    """The geometry of a :class:`Superpixel` set for one batch.

    Perturbations are handled either in pixel space (N,C,H,W) or as cell values
    ``coef`` (N, Cn, K) with ``Cn = C`` (per-channel) or 1 (shared) and K cells;
    :meth:`fill` maps cell values to pixels (a gather on the ids, then the crop) and
    :meth:`coefficients` maps pixels to cell means (the orthogonal projection onto the subspace).

    Attributes:
        counts: (N, Cn, K) pixels per cell inside the crop (0 for absent cells).
        lo, hi: (N, Cn, K) bounds of each cell value (the box, and for Linf the ball).
        eps: (N,) radii.
        mask: (N,1,H,W) crop.
    """

    def __init__(
        self,
        x: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        eps: torch.Tensor,
        norm: str,
        shared: bool,
    ) -> None:
        n, c, h, w = x.shape
        self.x = x
        self.norm = norm
        self.regions = ("image",)
        self.eps = eps
        self.mask = mask
        self.shared = shared
        self._shape = (n, c, h, w)
        self._cn = 1 if shared else c
        k = int(ids.max()) + 1 if ids.numel() else 1
        self.cells = k
        flat_ids = ids.reshape(n, 1, 1, h * w).long()
        if shared:
            self._idx = flat_ids.expand(n, 1, c, h * w).reshape(n, 1, c * h * w)
        else:
            self._idx = flat_ids.reshape(n, 1, h * w).expand(n, c, h * w)
        self._mask_cells = self._cells(mask.expand(n, c, h, w))
        zeros = torch.zeros((n, self._cn, k), device=x.device, dtype=x.dtype)
        self.counts = zeros.scatter_add(2, self._idx, self._mask_cells)
        inside = self._mask_cells > 0
        xc = self._cells(x)
        inf = torch.full_like(zeros, math.inf)
        xmin = inf.scatter_reduce(
            2, self._idx, torch.where(inside, xc, math.inf), "amin", include_self=True
        )
        xmax = (-inf).scatter_reduce(
            2, self._idx, torch.where(inside, xc, -math.inf), "amax", include_self=True
        )
        lo = -xmin.clamp(max=1.0)
        hi = 1.0 - xmax.clamp(min=0.0)
        if norm == "linf":
            e = eps.view(n, 1, 1)
            lo = torch.maximum(lo, -e)
            hi = torch.minimum(hi, e)
        self.lo = lo
        self.hi = hi
        self._active = self.counts > 0
        self._sqrt_counts = self.counts.sqrt()
        self.budget = eps.view(n, 1, 1, 1) * mask

    # ------------------------------------------------------------------ maps
    def _cells(self, t: torch.Tensor) -> torch.Tensor:
        n, c, h, w = self._shape
        return t.reshape(n, self._cn, (c // self._cn) * h * w)

    def fill(self, coef: torch.Tensor) -> torch.Tensor:
        """Cell values (N, Cn, K) -> perturbation (N,C,H,W) (gather on ids, then crop).

        Differentiable in ``coef``: the gradient of a loss of the result with respect to
        ``coef`` is the sum of the pixel gradients over each cell inside the crop.
        """
        out = coef.gather(2, self._idx) * self._mask_cells
        return out.reshape(self._shape)

    def coefficients(self, delta: torch.Tensor) -> torch.Tensor:
        """Cell means of ``delta`` inside the crop (N, Cn, K): the projection onto the subspace."""
        return self.cell_sums(delta) / self.counts.clamp_min(1)

    def cell_sums(self, t: torch.Tensor) -> torch.Tensor:
        """Sums of ``t`` (N,C,H,W) over each cell inside the crop (N, Cn, K)."""
        zeros = torch.zeros_like(self.counts)
        return zeros.scatter_add(2, self._idx, self._cells(t) * self._mask_cells)

    def cell_maxima(self, t: torch.Tensor) -> torch.Tensor:
        """Maximum of ``t`` (N,C,H,W) over each cell inside the crop (N, Cn, K); 0 if empty."""
        tc = torch.where(self._mask_cells > 0, self._cells(t), -math.inf)
        out = torch.full_like(self.counts, -math.inf)
        out = out.scatter_reduce(2, self._idx, tc, "amax", include_self=True)
        return torch.where(self._active, out, 0.0)

    def cell_norm(self, coef: torch.Tensor) -> torch.Tensor:
        """Pixel-space norm (the set's norm) of ``fill(coef)``, per sample (N,)."""
        if self.norm == "l2":
            return (self.counts * coef.square()).flatten(1).sum(1).sqrt()
        return torch.where(self._active, coef.abs(), 0.0).flatten(1).amax(1)

    def clip(self, coef: torch.Tensor) -> torch.Tensor:
        """Cell values clamped to the box (and, for Linf, to the ball): ``[lo, hi]``."""
        return torch.minimum(torch.maximum(coef, self.lo), self.hi)

    # ------------------------------------------------------------------ BoundThreat
    def sample(self, generator: GeneratorLike = None) -> torch.Tensor:
        n = self._shape[0]
        dev, dt = self.x.device, self.x.dtype
        g = draw("normal", self._shape, generator, device=dev, dtype=dt)
        u = draw("uniform", (n, 1), generator, device=dev, dtype=dt)
        # sqrt(m_k) * (cell mean of m_k standard normals) is standard normal per active cell.
        z = self.coefficients(g) * self._sqrt_counts
        if self.norm == "linf":
            uniform = 0.5 * (1 + torch.erf(z / math.sqrt(2.0)))
            coef = (2 * uniform - 1) * self.eps.view(n, 1, 1)
        else:
            dims = self._active.flatten(1).sum(1).clamp_min(1).to(dt)
            radius = self.eps * u[:, 0].pow(1.0 / dims)
            norm = z.flatten(1).norm(dim=1).clamp_min(_TINY)
            w = z * (radius / norm).view(n, 1, 1)
            coef = w / self._sqrt_counts.clamp_min(_TINY)
        coef = torch.where(self._active, coef, 0.0)
        return self.project_(self.fill(coef))

    def project_(self, delta: torch.Tensor) -> torch.Tensor:
        coef = self.coefficients(delta)
        if self.norm == "l2":
            n = coef.shape[0]
            s = self._sqrt_counts
            w = project_l2_box(
                (coef * s).reshape(n, -1),
                (self.lo * s).reshape(n, -1),
                (self.hi * s).reshape(n, -1),
                self.eps,
            ).view_as(coef)
            coef = torch.where(self._active, w / s.clamp_min(_TINY), 0.0)
        coef = self.clip(coef)
        return delta.copy_(self.fill(coef))

    def ascent(self, grad: torch.Tensor) -> torch.Tensor:
        n = grad.shape[0]
        sums = self.cell_sums(grad)
        live = (self.eps > 0).to(grad.dtype).view(n, 1, 1)
        if self.norm == "linf":
            return self.fill(sums.sign() * live)
        coef = sums / self.counts.clamp_min(1)
        norm = self.cell_norm(coef)
        inv = torch.where(norm > 0, 1.0 / norm.clamp_min(_TINY), 0.0).view(n, 1, 1)
        return self.fill(coef * inv * live)

    def mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.mask

    def norms(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = delta.detach().flatten(1)
        if self.norm == "l2":
            return {"image": flat.norm(dim=1)}
        return {"image": flat.abs().amax(1) if flat.numel() else flat.new_zeros(len(flat))}

    def _within_budget(self, delta: torch.Tensor, atol: float) -> torch.Tensor:
        size = self.norms(delta)["image"] <= self.eps + atol
        constant = (delta - self.fill(self.coefficients(delta))).abs() <= atol
        return size & constant.flatten(1).all(1)
