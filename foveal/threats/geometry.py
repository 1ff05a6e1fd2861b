"""Bound geometries: the Linf eps map intersected with the box, and L2 balls per region.

Two classes implement every set in :mod:`foveal.threats`:

- :class:`BoundLinfMap`: ``|delta| <= eps_map`` element-wise and ``0 <= x + delta <= 1``. An
  Linf ball (scalar or per-sample eps), a per-pixel eps map (PART), Linf region budgets (the dual
  set of seed 000) and frozen pixels (SIP-AT, budget 0) are all eps maps. Both constraints are
  boxes, so their intersection is the box ``[max(-eps, -x), min(eps, 1 - x)]`` and the exact
  projection is one clamp with bounds computed once at bind time.
- :class:`BoundL2Regions`: one L2 ball per region of a partition (a single region covering the
  image is the plain L2 ball), intersected with the box. The regions are disjoint, so the
  projection separates into one projection per region, each computed exactly by
  :func:`project_l2_box`.

Written by hand: the reference libraries project L2 balls by "rescale, then clip", which lands
inside the set but is not the projection; here the projection is exact, which the tests compare
against closed forms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from foveal.threats.base import BoundThreat, GeneratorLike, draw

__all__ = ["BoundL2Regions", "BoundLinfMap", "project_l2_box"]

_TINY = 1e-30


def project_l2_box(
    v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """Exact Euclidean projection of each row of ``v`` onto ``{d: ||d||_2 <= eps, lo <= d <= hi}``.

    Requires ``lo <= 0 <= hi`` (the box contains the centre, true for ``lo = -x``, ``hi = 1 - x``
    with ``x`` in [0, 1]). The KKT conditions give ``d = clip(t * v, lo, hi)`` for one scale
    ``t`` in [0, 1]: ``t = 1`` when ``||clip(v)|| <= eps``, otherwise the ``t`` with
    ``g(t) = ||clip(t v)||^2 = eps^2``. ``g`` is non-decreasing and piecewise quadratic, with a
    breakpoint ``b_i = c_i / v_i`` where coordinate ``i`` reaches its bound ``c_i``. An active-set
    iteration finds ``t`` exactly without sorting: with ``S`` the coordinates saturated at the
    current ``t``, solve ``sum_S c_i^2 + t'^2 sum_{not S} v_i^2 = eps^2`` for ``t'``. Starting from
    ``t = eps / ||v||``, every iterate stays below the solution (the quadratic over-estimates
    ``g``), the saturated set only grows, and the iteration stops exactly when it no longer
    changes, usually after a few rounds (at most D). A final rescale by ``min(1, eps / ||d||)``
    (which keeps ``d`` in the box because the box contains 0) absorbs rounding, so the result is
    always a member.

    Args:
        v: points to project, (N, D).
        lo, hi: box bounds, (N, D), with ``lo <= 0 <= hi``.
        eps: radii, (N,), >= 0.

    Returns:
        (N, D) tensor of ``v``'s dtype.

    Example:
        >>> v = torch.tensor([[3.0, 4.0]])
        >>> project_l2_box(v, torch.full_like(v, -9), torch.full_like(v, 9), torch.tensor([1.0]))
        tensor([[0.6000, 0.8000]])
    """
    eps = eps.to(v.dtype)
    eps2 = eps.square()
    total = torch.linalg.vector_norm(v, dim=1).square()
    t = (eps / total.sqrt().clamp_min(_TINY)).clamp(max=1.0)
    # Only coordinates of v outside the box can saturate for some t <= 1 (the box contains 0):
    # their breakpoints b_i = c_i / v_i lie in [0, 1). They are gathered once and the
    # iteration runs on them alone (usually a small fraction: pixels near 0 or 1).
    rows, cols = (torch.clamp(v, lo, hi) != v).nonzero(as_tuple=True)
    # Fast path: if no coordinate of t * v leaves the box, clip(t v) = t v is the answer (t is
    # reduced by a few ulps so that rounding cannot take the norm above eps).
    shrink = torch.where(t < 1, 1 - 8 * torch.finfo(v.dtype).eps, 1.0)
    scaled_t = t * shrink
    if len(rows) == 0:
        return scaled_t[:, None] * v
    # Flat gathers (index_select) cost a fraction of two-dimensional advanced indexing.
    flat = rows * v.shape[1] + cols
    v_c = v.reshape(-1).index_select(0, flat)
    lo_c, hi_c = lo.reshape(-1).index_select(0, flat), hi.reshape(-1).index_select(0, flat)
    bound_c = torch.where(v_c > 0, hi_c, lo_c)
    brk_c = bound_c / v_c
    if bool((brk_c >= scaled_t[rows]).all()):
        return scaled_t[:, None] * v
    c2_c, v2_c = bound_c.square(), v_c.square()
    zeros = torch.zeros_like(total)
    for _ in range(len(rows) + 1):
        saturated = brk_c <= t[rows]
        s_sat = zeros.index_add(0, rows, torch.where(saturated, c2_c, 0.0))
        s_free = total - zeros.index_add(0, rows, torch.where(saturated, v2_c, 0.0))
        t_new = ((eps2 - s_sat).clamp_min(0.0) / s_free.clamp_min(_TINY)).sqrt().clamp(max=1.0)
        t_new = torch.maximum(t_new, t)
        if bool((t_new == t).all()):
            break
        t = t_new
    # Only the candidates can leave the box (t <= 1 and the box contains 0): clip them alone.
    # The norm of the result follows from the candidates and ||v|| (no pass over the batch);
    # a uniform rescale by min(1, eps / norm) and a margin of a few ulps absorbs rounding, so
    # the result is always a member (it stays in the box: the box contains 0).
    clipped = torch.minimum(torch.maximum(t[rows] * v_c, lo_c), hi_c)
    norm2 = t.square() * (total - zeros.index_add(0, rows, v2_c)).clamp_min(0.0) + zeros.index_add(
        0, rows, clipped.square()
    )
    margin = 1 - 32 * torch.finfo(v.dtype).eps
    scale = (eps / norm2.sqrt().clamp_min(_TINY)).clamp(max=1.0) * margin
    out = (t * scale)[:, None] * v
    out.view(-1).index_copy_(0, flat, clipped * scale[rows])
    return out


class BoundLinfMap(BoundThreat):
    """``|delta| <= eps_map`` element-wise, intersected with the box ``0 <= x + delta <= 1``.

    Args:
        x: images (N,C,H,W) in [0,1].
        eps_map: budgets broadcastable to ``x`` ((N,1,1,1), (N,1,H,W) or (N,C,H,W)), >= 0.
        regions: ``(name, mask)`` pairs for :meth:`norms`; ``mask`` None means the whole image.
    """

    def __init__(
        self,
        x: torch.Tensor,
        eps_map: torch.Tensor,
        regions: Sequence[tuple[str, torch.Tensor | None]] = (("image", None),),
    ) -> None:
        self.x = x
        self.norm = "linf"
        self.budget = eps_map
        self.regions = tuple(name for name, _ in regions)
        self._region_masks = list(regions)
        self._lo = torch.maximum(-eps_map, -x)
        self._hi = torch.minimum(eps_map, 1 - x)
        active = eps_map > 0
        self._active: torch.Tensor | None = (
            None if bool(active.all()) else active.expand_as(x).to(x.dtype)
        )

    def sample(self, generator: GeneratorLike = None) -> torch.Tensor:
        u = draw("uniform", self.x.shape, generator, device=self.x.device, dtype=self.x.dtype)
        return self.project_(u.mul_(2).sub_(1).mul_(self.budget))

    def project_(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.clamp_(min=self._lo, max=self._hi)

    def ascent(self, grad: torch.Tensor) -> torch.Tensor:
        direction = grad.sign()
        if self._active is not None:
            direction.mul_(self._active)
        return direction

    def mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad if self._active is None else grad * self._active

    def norms(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        mag = delta.detach().abs()
        out = {}
        for name, mask in self._region_masks:
            part = mag if mask is None else mag * mask
            out[name] = part.flatten(1).amax(1) if part.numel() else part.new_zeros(len(part))
        return out

    def _within_budget(self, delta: torch.Tensor, atol: float) -> torch.Tensor:
        ok = delta.abs() <= self.budget + atol
        return ok.flatten(1).all(1)


class BoundL2Regions(BoundThreat):
    """One L2 ball per region of a partition, intersected with the box ``0 <= x + delta <= 1``.

    Args:
        x: images (N,C,H,W) in [0,1].
        masks: one mask per region, each (N,1,H,W) or (N,C,H,W) in {0,1}, together a partition
            of the image; a single ``None`` means one region covering everything.
        eps: radii (N, R), one column per region.
        names: region names, for :meth:`norms`.
    """

    def __init__(
        self,
        x: torch.Tensor,
        masks: Sequence[torch.Tensor | None],
        eps: torch.Tensor,
        names: Sequence[str],
    ) -> None:
        n = x.shape[0]
        self.x = x
        self.norm = "l2"
        self.regions = tuple(names)
        self._masks = [None if m is None else m.expand_as(x) for m in masks]
        self._eps = eps
        self._lo = (-x).flatten(1)
        self._hi = (1 - x).flatten(1)
        per_elem = x.numel() // max(n, 1)
        dims = []
        budget = torch.zeros((n, 1, 1, 1), device=x.device, dtype=x.dtype)
        for r, m in enumerate(self._masks):
            e = eps[:, r].view(n, 1, 1, 1)
            if m is None:
                dims.append(torch.full((n,), float(per_elem), device=x.device, dtype=x.dtype))
                budget = budget + e
            else:
                dims.append(m.flatten(1).sum(1))
                budget = budget + e * m
        self._dims = torch.stack(dims, 1)
        self.budget = budget
        active = budget > 0
        self._active: torch.Tensor | None = (
            None if bool(active.all()) else active.expand_as(x).to(x.dtype)
        )

    def _split(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t if m is None else t * m for m in self._masks]

    def sample(self, generator: GeneratorLike = None) -> torch.Tensor:
        n = self.x.shape[0]
        dev, dt = self.x.device, self.x.dtype
        g = draw("normal", self.x.shape, generator, device=dev, dtype=dt)
        u = draw("uniform", (n, len(self._masks)), generator, device=dev, dtype=dt)
        delta = torch.zeros_like(self.x)
        for r, part in enumerate(self._split(g)):
            norm = part.flatten(1).norm(dim=1).clamp_min(_TINY)
            dims = self._dims[:, r].clamp_min(1)
            radius = self._eps[:, r] * u[:, r].pow(1.0 / dims)
            delta += part * (radius / norm).view(n, 1, 1, 1)
        return self.project_(delta)

    def project_(self, delta: torch.Tensor) -> torch.Tensor:
        parts = [p.flatten(1) for p in self._split(delta)]
        out = project_l2_box(parts[0], self._lo, self._hi, self._eps[:, 0])
        for r in range(1, len(parts)):
            out = out + project_l2_box(parts[r], self._lo, self._hi, self._eps[:, r])
        # A new tensor (allowed by the contract: callers use the return value); copying it
        # back into ``delta`` would cost one more pass over the batch.
        return out.view_as(delta)

    def ascent(self, grad: torch.Tensor) -> torch.Tensor:
        n = grad.shape[0]
        if len(self._masks) == 1 and self._masks[0] is None:  # plain ball: no mask to apply
            norm = grad.flatten(1).norm(dim=1)
            inv = torch.where(
                norm > 0, (self._eps[:, 0] > 0).to(grad.dtype) / norm.clamp_min(_TINY), 0.0
            )
            return grad * inv.view(n, 1, 1, 1)
        direction = torch.zeros_like(grad)
        for r, part in enumerate(self._split(grad)):
            active = (self._eps[:, r] > 0).to(grad.dtype)
            norm = part.flatten(1).norm(dim=1)
            inv = torch.where(norm > 0, active / norm.clamp_min(_TINY), torch.zeros_like(norm))
            direction += part * inv.view(n, 1, 1, 1)
        return direction

    def mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad if self._active is None else grad * self._active

    def norms(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = self._split(delta.detach())
        return {
            name: part.flatten(1).norm(dim=1)
            for name, part in zip(self.regions, parts, strict=True)
        }

    def _within_budget(self, delta: torch.Tensor, atol: float) -> torch.Tensor:
        norms = torch.stack(list(self.norms(delta).values()), 1)
        return (norms <= self._eps + atol).all(1)
