"""Bound geometries: the Linf eps map intersected with the box, and L2 balls per region.

Two classes implement every set in :mod:`foveal.threats`:

- :class:`BoundLinfMap`: ``|delta| <= eps_map`` element-wise and ``0 <= x + delta <= 1``. An
  Linf ball (scalar or per-sample eps), a per-pixel eps map (PART), Linf region budgets (the dual
  set of Tong et al. 2020) and frozen pixels (SIP-AT, budget 0) are all eps maps. Both constraints
  are boxes, so their intersection is the box ``[max(-eps, -x), min(eps, 1 - x)]`` and the exact
  projection is one clamp with bounds computed once at bind time.
- :class:`BoundL2Regions`: one L2 ball per region of a partition (a single region covering the
  image is the plain L2 ball), intersected with the box. The regions are disjoint, so the
  projection separates into one projection per region, each computed exactly by
  :func:`project_l2_box`.

Written by hand: the reference libraries project L2 balls by "rescale, then clip", which lands
inside the set but is not the projection; here :meth:`BoundThreat.project_` is the exact
projection, which the tests compare against closed forms, and "rescale, then clip" is
:meth:`BoundThreat.rescale_` (the per-step update the iterative attacks use by default, see
:mod:`foveal.attacks.iterative`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch

from foveal.threats.base import BoundThreat, GeneratorLike, draw

__all__ = ["BoundL2Regions", "BoundLinfMap", "project_l2_box"]

_TINY = 1e-30


def _margin(dtype: torch.dtype) -> float:
    """``1 - 32 ulp``: points scaled onto a sphere by this stay inside it despite rounding."""
    return 1 - 32 * torch.finfo(dtype).eps


def _outside_box(
    v: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    within: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The coordinates of ``v`` outside ``[lo, hi]``: flat indices, values and nearest bounds.

    ``within`` (flat indices and their ``lo``, ``hi``) restricts the search to a known superset,
    which saves a comparison and a ``nonzero`` over the whole batch.
    """
    if within is None:
        w = torch.clamp(v, lo, hi)
        flat = (w != v).view(-1).nonzero().squeeze(1)
        return flat, v.reshape(-1).index_select(0, flat), w.view(-1).index_select(0, flat)
    idx, lo_s, hi_s = within
    v_s = v.reshape(-1).index_select(0, idx)
    w_s = torch.clamp(v_s, lo_s, hi_s)
    sel = (w_s != v_s).nonzero().squeeze(1)
    return idx.index_select(0, sel), v_s.index_select(0, sel), w_s.index_select(0, sel)


def project_l2_box(
    v: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    eps: torch.Tensor,
    *,
    within: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
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
    and a margin of a few ulps (which keep ``d`` in the box because the box contains 0) absorb
    rounding, so the result is always a member.

    Only coordinates of ``v`` outside the box can saturate for some ``t <= 1`` (the box contains
    0); they are gathered once and the iteration runs on them alone (usually a small fraction:
    pixels near 0 or 1).

    Args:
        v: points to project, (N, D).
        lo, hi: box bounds, (N, D), with ``lo <= 0 <= hi``.
        eps: radii, (N,), >= 0.
        within: optional ``(flat indices, lo there, hi there)`` of a superset of the coordinates
            of ``v`` that lie outside the box (a speed-up; the result does not depend on it).

    Returns:
        (N, D) tensor of ``v``'s dtype.

    Example:
        >>> v = torch.tensor([[3.0, 4.0]])
        >>> project_l2_box(v, torch.full_like(v, -9), torch.full_like(v, 9), torch.tensor([1.0]))
        tensor([[0.6000, 0.8000]])
    """
    d = v.shape[1]
    eps = eps.to(v.dtype)
    norm = torch.linalg.vector_norm(v, dim=1)
    t = (eps / norm.clamp_min(_TINY)).clamp(max=1.0)
    margin = _margin(v.dtype)
    flat, v_c, bound_c = _outside_box(v, lo, hi, within)
    rows = flat // d
    brk = bound_c / v_c  # in [0, 1): v_c lies outside a box that contains 0
    saturated = brk <= t.index_select(0, rows)
    count = int(saturated.sum())
    if count == 0:  # no coordinate of t * v leaves the box: clip(t v) = t v
        return (t * torch.where(t < 1, margin, 1.0))[:, None] * v
    # Columns: (eps^2, ||v||^2) per row, minus (sum_S c_i^2, sum_S v_i^2) over the saturated S.
    base = torch.stack((eps, norm), 1).square()
    pair = torch.stack((bound_c, v_c), 1).square()
    floor = base.new_tensor([0.0, _TINY])
    zeros = torch.zeros_like(base)
    while True:
        rest = (base - zeros.index_add(0, rows, pair * saturated[:, None])).clamp_min(floor)
        t = torch.maximum((rest[:, 0] / rest[:, 1]).sqrt().clamp(max=1.0), t)
        saturated = brk <= t.index_select(0, rows)
        new_count = int(saturated.sum())
        if new_count == count:  # the saturated set only grows: unchanged means converged
            break
        count = new_count
    # ||clip(t v)||^2 from the sums (no pass over the batch): a rescale by min(1, eps / norm)
    # and the margin absorb rounding, so the result is a member without tolerance.
    norm2 = t.square() * rest[:, 1] + (base[:, 0] - rest[:, 0])
    shrink = (eps / norm2.sqrt().clamp_min(_TINY)).clamp(max=1.0) * margin
    out = (t * shrink)[:, None] * v
    clipped = torch.where(saturated, bound_c, v_c * t.index_select(0, rows))
    clipped.mul_(shrink.index_select(0, rows))
    out.view(-1).index_copy_(0, flat, clipped)
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
        self._plain = len(self._masks) == 1 and self._masks[0] is None  # one ball, no mask
        self._eps = eps
        self._lo = (-x).flatten(1)
        self._hi = (1 - x).flatten(1)
        self._superset: tuple[float, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] | None
        self._superset = None
        self._last: Callable[[], torch.Tensor | None] = lambda: None
        self._last_version = -1
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
        self._active_ball = (eps[:, 0] > 0).to(x.dtype)
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
        # Only the direction of g matters: float32 normals (a fifth of the cost of float64 ones,
        # the bulk of an L2 attack's fixed cost per call) are as good as any.
        g = draw("normal", self.x.shape, generator, device=dev, dtype=dt, precision=torch.float32)
        u = draw("uniform", (n, len(self._masks)), generator, device=dev, dtype=dt)
        # Each part lies inside its ball (the radius carries a margin of a few ulps against
        # rounding), and the projection of a point of the ball onto ball and box is its clip to
        # the box (clipping towards 0 only shortens it).
        margin = _margin(dt)
        delta = torch.zeros_like(self.x)
        for r, part in enumerate(self._split(g)):
            norm = part.flatten(1).norm(dim=1).clamp_min(_TINY)
            dims = self._dims[:, r].clamp_min(1)
            radius = self._eps[:, r] * u[:, r].pow(1.0 / dims) * margin
            delta += part * (radius / norm).view(n, 1, 1, 1)
        flat = delta.view(n, -1)
        torch.clamp(flat, self._lo, self._hi, out=flat)
        return self._remember(delta)

    def _candidates(
        self, delta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """A superset of the coordinates where ``delta`` (or a region's part) can leave the box.

        Coordinate ``i`` can only leave the box if ``|delta_i| > min(x_i, 1 - x_i)``, so the
        coordinates with ``min(x_i, 1 - x_i) < tau`` cover every candidate while
        ``max |delta| <= tau``. The set is cached and rebuilt (with a larger ``tau``) only when
        the perturbation grows past it, which in an iterative attack happens a few times per
        call. None when the superset would be a large part of the batch (a direct search is
        then cheaper).
        """
        if self._lo.numel() == 0:
            return None
        low, high = delta.aminmax()  # one pass, no temporary of the batch's size
        reach = max(float(high), -float(low))
        if self._superset is None or reach > self._superset[0]:
            tau = 1.25 * reach
            dist = torch.minimum(self._lo.neg(), self._hi).view(-1)
            idx = (dist < tau).nonzero().squeeze(1)
            if len(idx) > dist.numel() // 8:
                self._superset = (tau, None)
            else:
                lo, hi = self._lo.view(-1), self._hi.view(-1)
                self._superset = (tau, (idx, lo.index_select(0, idx), hi.index_select(0, idx)))
        return self._superset[1]

    def project_(self, delta: torch.Tensor) -> torch.Tensor:
        # A tensor this method (or rescale_) returned, not modified since (same version
        # counter), is a member, and the projection of a member is itself: it is returned as it
        # is (the engine projects an attack's result once more).
        if self._is_last(delta):
            return delta
        within = self._candidates(delta)
        parts = [p.flatten(1) for p in self._split(delta)]
        out = project_l2_box(parts[0], self._lo, self._hi, self._eps[:, 0], within=within)
        for r in range(1, len(parts)):
            out = out + project_l2_box(parts[r], self._lo, self._hi, self._eps[:, r], within=within)
        # A new tensor (allowed by the contract: callers use the return value); copying it
        # back into ``delta`` would cost one more pass over the batch.
        return self._remember(out.view_as(delta))

    def _is_last(self, delta: torch.Tensor) -> bool:
        """Whether ``delta`` is this set's last output, unmodified since (so a member)."""
        return self._last() is delta and delta._version == self._last_version

    def _remember(self, result: torch.Tensor) -> torch.Tensor:
        self._last = weakref.ref(result)
        self._last_version = result._version
        return result

    def rescale_(self, delta: torch.Tensor) -> torch.Tensor:
        if self._is_last(delta):
            return delta
        n = delta.shape[0]
        # Parts inside their ball are kept (factor 1, so members are unchanged); the others are
        # scaled onto a sphere a few ulps inside the budget, so that rounding cannot leave it.
        margin = _margin(delta.dtype)
        out: torch.Tensor | None = None
        for r, part in enumerate(self._split(delta)):
            norm = torch.linalg.vector_norm(part.flatten(1), dim=1)
            eps = self._eps[:, r]
            factor = torch.where(norm > eps, eps / norm.clamp_min(_TINY) * margin, 1.0)
            scaled = part * factor.view(n, 1, 1, 1)
            out = scaled if out is None else out.add_(scaled)
        assert out is not None
        flat = out.view(n, -1)
        torch.clamp(flat, self._lo, self._hi, out=flat)
        return self._remember(out)

    def ascend_(self, delta: torch.Tensor, grad: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        if not self._plain:
            return super().ascend_(delta, grad, step)
        # Plain ball: the per-sample factor step / ||grad|| is applied inside one addcmul.
        return delta.addcmul_(grad, step * self._ball_factor(grad))

    def _ball_factor(self, grad: torch.Tensor) -> torch.Tensor:
        """(N,1,1,1): ``1 / ||grad||`` per sample (0 where the budget is 0); plain ball only."""
        norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)
        coef = self._active_ball / norm.clamp_min(_TINY)  # grad = 0 gives 0 * finite = 0
        return coef.view(-1, 1, 1, 1)

    def ascent(self, grad: torch.Tensor) -> torch.Tensor:
        n = grad.shape[0]
        if self._plain:  # no mask to apply
            return grad * self._ball_factor(grad)
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
