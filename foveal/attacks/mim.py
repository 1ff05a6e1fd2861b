"""MIM / MI-FGSM (Dong et al., CVPR 2018): iterative steps along an accumulated momentum.

``g <- mu * g + grad / ||grad||_1`` with the L1 norm taken per sample over C*H*W (never over the
batch) and ``g`` reset at every call; the step is the set's ascent direction of ``g``
(``sign(g)`` for Linf, ``g / ||g||_2`` per region for L2). The set's support is applied to the
gradient before it is normalised. Defaults: 10 steps of ``eps / steps``, ``mu = 1``, zero start,
as in the paper. Unlike foolbox, the raw gradient is *not* accumulated unnormalised.
"""

from __future__ import annotations

import torch
from torch import nn

from foveal._validation import check_eps
from foveal.attacks.base import ATTACKS, Problem
from foveal.attacks.iterative import IterativeAttack
from foveal.attacks.objectives import ObjectiveLike

__all__ = ["MIM"]


@ATTACKS.register("mim", help="MIM / MI-FGSM: momentum of L1-normalised gradients, Linf or L2")
class MIM(IterativeAttack):
    """Momentum iterative method, Linf or L2.

    Args:
        model: classifier on [0,1] images returning logits.
        eps: budget of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations (default 10).
        mu: momentum decay (default 1.0).
        alpha: absolute step; default ``rel_alpha = 1 / steps`` (step ``eps / steps``).
        rel_alpha: step relative to each region's budget.
        random_start: start from a random point of the set (default False, as in the paper).
        restarts, objective, seed: see :class:`~foveal.attacks.Attack`.
        projection: ``"rescale"`` (default) or ``"exact"``; see :mod:`foveal.attacks.iterative`.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> x_adv = MIM(model, eps=16 / 255, mu=1.0)(x, y)
        >>> bool(((x_adv - x).abs() <= 16 / 255 + 1e-6).all())
        True
    """

    name = "mim"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 10,
        mu: float = 1.0,
        alpha: float | None = None,
        rel_alpha: float | None = None,
        random_start: bool = False,
        restarts: int = 1,
        objective: ObjectiveLike = "ce",
        seed: int | None = 0,
        projection: str = "rescale",
    ) -> None:
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            steps=steps,
            alpha=alpha,
            rel_alpha=rel_alpha,
            random_start=random_start,
            restarts=restarts,
            objective=objective,
            seed=seed,
            projection=projection,
        )
        self.mu = check_eps(mu, "mu")

    def init_state(self, problem: Problem) -> dict[str, torch.Tensor]:
        return {"momentum": torch.zeros_like(problem.images)}

    def direction(
        self, problem: Problem, grad: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        grad = problem.threat.mask_gradient(grad)
        l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-30).view(-1, 1, 1, 1)
        momentum = state["momentum"].mul_(self.mu).add_(grad / l1)
        return problem.threat.ascent(momentum)
