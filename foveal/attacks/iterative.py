"""The shared loop of the gradient-sign family: step along the set's ascent, project, repeat.

``delta <- project(delta + step * direction(grad))`` with ``direction`` the set's steepest-ascent
direction (sign for Linf, region-normalised gradient for L2) unless an attack overrides
:meth:`IterativeAttack.direction` (MIM adds momentum). FGSM, BIM and PGD differ only in their
defaults: the number of steps, the step size and whether they start at a random point.

Projection: after each step the iterate is mapped back into the set. With
``projection="rescale"`` (the default) each L2 region's part is scaled into its ball and the
result clipped to the box (:meth:`~foveal.threats.BoundThreat.rescale_`), the update of
torchattacks' ``PGDL2``, robustness and AutoAttack. ``projection="exact"`` uses the set's
Euclidean projection instead (for L2 sets the exact projection onto the ball intersected with
the box, :func:`~foveal.threats.project_l2_box`), which uses the whole budget where pixels
saturate. Both land inside the set. On trained ``shapes`` models they give the same robust
accuracy (PGD-20, L2 0.25 / 0.5 / 1.0, 500 images: identical to 0.1 point; the mean perturbation
norm differs in the fourth decimal), while the exact projection costs 0.4 ms more per step
outside the model, 1-3% of a PGD-20 call on the small ``shapes`` CNN (``benchmarks/README.md``).
Linf sets project with one clamp either way.

Step sizes: ``alpha`` is an absolute step (in the set's norm, the same in every region);
otherwise the step is ``rel_alpha`` times each region's budget, so one setting serves a plain
ball and a region budget with very different budgets (the per-region step sizes alpha_F, alpha_B
of Tong et al. 2020, Appendix A, in proportion to eps_F, eps_B).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from foveal._validation import check_eps
from foveal.attacks.base import Attack, Problem
from foveal.attacks.objectives import ObjectiveLike

__all__ = ["PROJECTIONS", "IterativeAttack"]

#: How an iterative attack maps its iterate back into the set after each step.
PROJECTIONS = ("exact", "rescale")


class IterativeAttack(Attack):
    """Base of FGSM, BIM, MIM and PGD (see the module docstring).

    Args:
        model: classifier on [0,1] images returning logits.
        eps: radius of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: number of gradient steps (>= 1).
        alpha: absolute step size; mutually exclusive with ``rel_alpha``.
        rel_alpha: step as a fraction of each region's budget (default: the attack's rule,
            ``default_rel_alpha_times_steps / steps``).
        random_start: start from a random point of the set (default: the attack's
            ``default_random_start``).
        restarts: runs per sample; the best is kept.
        objective: ``"ce"``, ``"margin"``, an Objective or a callable.
        seed: random-start seed (None: fresh each call).
        projection: ``"rescale"`` (rescale, then clip; default) or ``"exact"`` (Euclidean
            projection); see the module docstring.

    Subclasses that differ only in defaults set class attributes instead of re-declaring the
    constructor: ``default_rel_alpha_times_steps`` and ``default_random_start`` (PGD: 2.5 and
    True).
    """

    #: ``rel_alpha`` default is ``default_rel_alpha_times_steps / steps``.
    default_rel_alpha_times_steps: ClassVar[float] = 1.0

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 10,
        alpha: float | None = None,
        rel_alpha: float | None = None,
        random_start: bool | None = None,
        restarts: int = 1,
        objective: ObjectiveLike = "ce",
        seed: int | None = 0,
        projection: str = "rescale",
    ) -> None:
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            objective=objective,
            random_start=random_start,
            restarts=restarts,
            seed=seed,
        )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        if alpha is not None and rel_alpha is not None:
            raise ValueError(
                f"give alpha (absolute) or rel_alpha (relative to the budget), not both; "
                f"got alpha={alpha!r}, rel_alpha={rel_alpha!r}"
            )
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}; got {projection!r}")
        self.projection = projection
        self.steps = steps
        self.alpha = None if alpha is None else check_eps(alpha, "alpha")
        if rel_alpha is None and alpha is None:
            rel_alpha = self.default_rel_alpha_times_steps / steps
        self.rel_alpha = None if rel_alpha is None else check_eps(rel_alpha, "rel_alpha")

    def init_state(self, problem: Problem) -> dict[str, torch.Tensor]:
        """Per-call algorithm state (e.g. momentum); empty by default."""
        return {}

    def direction(
        self, problem: Problem, grad: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The update direction for ``grad``; default: the set's steepest ascent."""
        return problem.threat.ascent(grad)

    def step_map(self, problem: Problem) -> Callable[[torch.Tensor], torch.Tensor]:
        """The map back into the set after each step (see ``projection``)."""
        threat = problem.threat
        return threat.project_ if self.projection == "exact" else threat.rescale_

    def step_size(self, problem: Problem) -> torch.Tensor:
        """The step, broadcastable to the images (``alpha`` or ``rel_alpha`` x budget)."""
        return problem.step_size(self.alpha, self.rel_alpha or 0.0)

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        step = self.step_size(problem)
        state = self.init_state(problem)
        threat, project_ = problem.threat, self.step_map(problem)
        plain = type(self).direction is IterativeAttack.direction
        for _ in range(self.steps):
            grad, _ = problem.gradient(delta)
            if plain:  # the set's own steepest ascent, fused with the step where it can be
                delta = project_(threat.ascend_(delta, grad, step))
            else:
                delta = project_(delta.addcmul_(step, self.direction(problem, grad, state)))
        return delta
