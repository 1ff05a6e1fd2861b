"""FGSM / FGM (Goodfellow et al., ICLR 2015): one step to the linear maximiser of the loss.

``delta = project(budget * ascent(grad))``: ``eps * sign(grad)`` for Linf, ``eps * grad /
||grad||_2`` for L2 (FGM, Dong et al.'s (2020) baseline), per region for region budgets.
"""

from __future__ import annotations

from torch import nn

from foveal.attacks.base import ATTACKS
from foveal.attacks.iterative import IterativeAttack
from foveal.attacks.objectives import ObjectiveLike

__all__ = ["FGSM"]


@ATTACKS.register("fgsm", help="FGSM / FGM: one step of size eps along the ascent direction")
class FGSM(IterativeAttack):
    """Fast gradient sign method (Linf) / fast gradient method (L2), one step.

    Args:
        model: classifier on [0,1] images returning logits.
        eps: budget of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"``.
        alpha: absolute step (default: the full budget, ``rel_alpha=1``).
        rel_alpha: step relative to each region's budget (default 1.0).
        random_start: start from a random point (with ``rel_alpha=1.25`` this is the "fast
            adversarial training" step of Wong et al. 2020).
        restarts, objective, seed: see :class:`~foveal.attacks.Attack`.
        projection: ``"rescale"`` (default) or ``"exact"``; see :mod:`foveal.attacks.iterative`.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> x_adv = FGSM(model, eps=8 / 255)(x, y)
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """

    name = "fgsm"

    # Its own constructor because FGSM takes no ``steps`` (always one); a class default could
    # only change the default, and the command line checks options against this signature.
    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
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
            steps=1,
            alpha=alpha,
            rel_alpha=rel_alpha,
            random_start=random_start,
            restarts=restarts,
            objective=objective,
            seed=seed,
            projection=projection,
        )
