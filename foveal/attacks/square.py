"""Square attack (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020), Linf and L2, on every set.

A random search that uses only the model's outputs (no gradients), so it catches gradient
masking. It minimises the margin ``z_y - max_{j != y} z_j`` (targeted: ``max_{j != t} z_j - z_t``)
and stops a sample once the margin is negative. Each iteration proposes a change inside a random
square window of side ``s = round(sqrt(p * H * W))``, where the fraction ``p`` starts at ``p_init``
(0.8) and is halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 iterations (rescaled
to a budget of 10,000 queries); the proposal is kept if it lowers the margin.

- Linf: the window is set to ``+-budget`` with one random sign per channel (a vertex of the set),
  re-drawn with the opposite signs if that changes nothing; the start is vertical stripes of
  ``+-budget`` (random sign per column and channel).
- L2: the mass of the perturbation in the window and in a second random window is moved into the
  first window as a pseudo-Gaussian bump of two halves of opposite sign (random sign per channel,
  random orientation); then each region is rescaled to its budget. The start is a grid of such
  bumps with random signs.

Region-aware: values come from the set's per-element ``budget`` and ``ascent`` (so frozen pixels
get 0 and each region of a region budget its own radius), windows are drawn only where at least
one pixel may move, and every proposal is projected onto the set, so the result is always a member.

Randomness: each sample draws from its own generator seeded by ``seed`` and the image's bytes (as
the engine's random starts), so batched runs equal per-sample runs; the engine's ``random_start``
is not used (the attack has its own start).

Written by hand from the paper on foveal's engine (torchattacks' port does not take foveal's sets;
the reference AutoAttack is not on PyPI). The pseudo-Gaussian bump follows the paper's definition.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from foveal.attacks._common import check_int, check_positive, logit_margin, per_sample_generators
from foveal.attacks._common import uniform_rows as _uniform
from foveal.attacks.base import ATTACKS, Attack, Problem

__all__ = ["Square", "pseudo_gaussian"]

_MILESTONES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def pseudo_gaussian(h: int, w: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The paper's pseudo-Gaussian bump on an (h, w) window: nested rectangles, centre largest.

    Entry value ``sum_{k=d}^{M} 1 / (M + 1 - k)^2`` for an entry at ring ``d`` (its Chebyshev
    distance from the centre, in rings), ``M`` the outermost ring; normalised to unit L2 norm.

    Example:
        >>> b = pseudo_gaussian(5, 5)
        >>> bool(b[2, 2] == b.max()), round(float(b.norm()), 6)
        (True, 1.0)
    """
    rows = torch.arange(h, dtype=dtype)
    cols = torch.arange(w, dtype=dtype)
    dr = (rows - (h - 1) / 2).abs().floor()
    dc = (cols - (w - 1) / 2).abs().floor()
    ring = torch.maximum(dr[:, None], dc[None, :]).long()
    rings = int(ring.max()) + 1
    weights = torch.tensor([1.0 / (rings - k) ** 2 for k in range(rings)], dtype=dtype)
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} weights[k]
    bump = tail[ring]
    return bump / bump.norm().clamp_min(1e-30)


def _split_bump(s: int, transpose: bool, dtype: torch.dtype) -> torch.Tensor:
    """Two half-window bumps of opposite sign (the paper's L2 update), unit norm."""
    half = max(s // 2, 1)
    out = torch.zeros(s, s, dtype=dtype)
    out[:half] = pseudo_gaussian(half, s, dtype=dtype)
    if s - half > 0:
        out[half:] = -pseudo_gaussian(s - half, s, dtype=dtype)
    out = out.t() if transpose else out
    return out / out.norm().clamp_min(1e-30)


@ATTACKS.register("square", help="Square: query-based random search (no gradients), Linf or L2")
class Square(Attack):
    """Square attack, Linf or L2, inside any perturbation set.

    Args:
        model: classifier on [0,1] images returning logits.
        eps: budget of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"`` (the update rule; a set given per call decides).
        n_queries: model queries per sample, the start included (default 5000).
        p_init: initial fraction of pixels in the window (default 0.8).
        seed: seed of the random search (None: fresh each call).

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from foveal.threats import frozen
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> salient = torch.zeros(2, 1, 8, 8); salient[..., 2:5, 2:5] = 1
        >>> adv = Square(model, n_queries=50)(x, y, threat=frozen(salient, 8 / 255))
        >>> bool((adv[..., 2:5, 2:5] == x[..., 2:5, 2:5]).all())
        True
    """

    name = "square"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        n_queries: int = 5000,
        p_init: float = 0.8,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, objective="margin", seed=seed)
        self.n_queries = check_int(n_queries, "n_queries", 1)
        self.p_init = check_positive(p_init, "p_init")
        if self.p_init > 1:
            raise ValueError(f"p_init must be in (0, 1]; got {p_init!r}")

    def _fraction(self, iteration: int) -> float:
        it = int(iteration / self.n_queries * 10000)
        halvings = sum(it > m for m in _MILESTONES)
        return self.p_init / 2**halvings

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        x, bound = problem.images, problem.threat
        n, c, h, w = x.shape
        if n == 0:
            return delta
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        gens = per_sample_generators(problem, seed, salt=7)
        linf = bound.norm == "linf"
        budget = bound.budget.expand_as(x)
        movable = bound.mask_gradient(torch.ones_like(x)) != 0
        support = movable.any(1, keepdim=True).to(x.dtype)  # (N,1,H,W)

        delta = self._start(bound, x, gens, linf, budget)
        margin = self._margin(problem, delta, torch.arange(n, device=x.device))
        done = (margin < 0) | (support.flatten(1).sum(1) == 0)
        rows_idx = torch.arange(h, device=x.device).view(1, h, 1)
        cols_idx = torch.arange(w, device=x.device).view(1, 1, w)
        for i in range(self.n_queries - 1):
            live = (~done).nonzero().squeeze(1)
            if live.numel() == 0:
                break
            m = live.numel()
            s = round(math.sqrt(self._fraction(i) * h * w))
            s = max(1, min(s, h - 1 if h > 1 else 1, w - 1 if w > 1 else 1))
            u = _uniform([gens[j] for j in live.tolist()], 3 + 2 * c, x).to(x.dtype)
            top1, left1, none1 = self._position(support[live], s, u[:, 0])
            win1 = self._window(top1, left1, s, rows_idx, cols_idx)  # (m,1,H,W) bool
            signs = torch.where(u[:, 3 : 3 + c] < 0.5, -1.0, 1.0).to(x.dtype).view(m, c, 1, 1)
            current = delta[live]
            if linf:
                cand = torch.where(win1, budget[live] * signs, current)
                cand = self._project_rows(bound, delta, live, cand)
                same = (cand == current).flatten(1).all(1)
                if bool(same.any()):
                    flipped = torch.where(win1, -budget[live] * signs, current)
                    flipped = self._project_rows(bound, delta, live, flipped)
                    cand = torch.where(same.view(-1, 1, 1, 1), flipped, cand)
            else:
                top2, left2, _ = self._position(support[live], s, u[:, 1])
                win2 = self._window(top2, left2, s, rows_idx, cols_idx)
                both = (win1 | win2).to(x.dtype)
                mass = (current * both).square().sum((2, 3)).sqrt()  # (m, C)
                share = current.square().sum((2, 3)).sqrt() * (s / math.sqrt(h * w))
                scale = torch.maximum(mass, share).view(m, c, 1, 1)
                transpose = u[:, 2] < 0.5
                bumps = torch.stack(
                    [_split_bump(s, bool(t), x.dtype) for t in transpose.tolist()]
                ).to(x.device)
                placed = self._place(bumps, top1, left1, s, h, w)  # (m,1,H,W)
                raw = current * (1 - both) + placed * signs * scale
                full = torch.zeros_like(delta)
                full[live] = raw
                cand = (bound.budget * bound.ascent(full))[live]
                cand = self._project_rows(bound, delta, live, cand)
            cand = torch.where(none1.view(-1, 1, 1, 1), current, cand)
            new_margin = self._margin(problem, cand, live, cand_is_rows=True)
            better = new_margin < margin[live]
            delta[live] = torch.where(better.view(-1, 1, 1, 1), cand, current)
            margin[live] = torch.where(better, new_margin, margin[live])
            done[live] = (margin[live] < 0) | none1
        return delta

    # ------------------------------------------------------------------ pieces
    def _start(
        self,
        bound: object,
        x: torch.Tensor,
        gens: list[torch.Generator],
        linf: bool,
        budget: torch.Tensor,
    ) -> torch.Tensor:
        from foveal.threats import BoundThreat

        assert isinstance(bound, BoundThreat)
        n, c, h, w = x.shape
        if linf:
            u = _uniform(gens, c * w, x).to(x.dtype).view(n, c, 1, w)
            stripes = torch.where(u < 0.5, -1.0, 1.0).to(x.dtype)
            return bound.project_(budget * stripes)
        block = max(h // 5, 1)
        nh, nw = math.ceil(h / block), math.ceil(w / block)
        u = _uniform(gens, c * nh * nw, x).to(x.dtype).view(n, c, nh, nw)
        signs = torch.where(u < 0.5, -1.0, 1.0).to(x.dtype)
        bump = pseudo_gaussian(block, block, dtype=x.dtype).to(x.device).repeat(nh, nw)[:h, :w]
        tiled = F.interpolate(signs, scale_factor=block, mode="nearest")[..., :h, :w] * bump
        return bound.project_(bound.budget * bound.ascent(tiled))

    @staticmethod
    def _project_rows(
        bound: object, delta: torch.Tensor, live: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        from foveal.threats import BoundThreat

        assert isinstance(bound, BoundThreat)
        full = delta.clone()
        full[live] = rows
        return bound.project_(full)[live]

    @staticmethod
    def _position(
        support: torch.Tensor, s: int, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-left corners of windows that contain a movable pixel, uniformly at random."""
        valid = F.max_pool2d(support, s, stride=1) > 0  # (m,1,H-s+1,W-s+1)
        width = valid.shape[-1]
        flat = valid.flatten(1)
        count = flat.sum(1)
        k = (u * count.to(u.dtype)).floor().long().clamp(max=(count - 1).clamp_min(0))
        pos = (flat.cumsum(1) <= k[:, None]).sum(1).clamp(max=flat.shape[1] - 1)
        return pos // width, pos % width, count == 0

    @staticmethod
    def _window(
        top: torch.Tensor, left: torch.Tensor, s: int, rows: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        inside_r = (rows >= top.view(-1, 1, 1)) & (rows < top.view(-1, 1, 1) + s)
        inside_c = (cols >= left.view(-1, 1, 1)) & (cols < left.view(-1, 1, 1) + s)
        return (inside_r & inside_c).unsqueeze(1)

    @staticmethod
    def _place(
        bumps: torch.Tensor, top: torch.Tensor, left: torch.Tensor, s: int, h: int, w: int
    ) -> torch.Tensor:
        m = bumps.shape[0]
        out = bumps.new_zeros(m, 1, h, w)
        for j in range(m):
            t, lf = int(top[j]), int(left[j])
            out[j, 0, t : t + s, lf : lf + s] = bumps[j]
        return out

    @staticmethod
    def _margin(
        problem: Problem, delta: torch.Tensor, rows: torch.Tensor, *, cand_is_rows: bool = False
    ) -> torch.Tensor:
        """Margin to minimise (< 0 once adversarial) for the samples ``rows``."""
        d = delta if cand_is_rows else delta[rows]
        with torch.no_grad():
            logits = problem.model(problem.images[rows] + d)
        return -logit_margin(logits, problem.labels[rows], problem.targeted)
