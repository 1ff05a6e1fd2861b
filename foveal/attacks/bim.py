"""BIM / I-FGSM (Kurakin et al., 2017) and its L2 form I-FGM (the baseline of Dong et al. 2020).

``delta <- project(delta + alpha * ascent(grad))`` from zero, ``steps`` times. Linf steps are
``sign(grad)``; L2 steps are normalised gradients ``grad / ||grad||_2`` (per region), as in I-FGM.
Default step ``eps / steps`` (Dong et al.'s I-FGSM setting), i.e. ``rel_alpha = 1 / steps``.
"""

from __future__ import annotations

from torch import nn

from foveal.attacks.base import ATTACKS
from foveal.attacks.iterative import IterativeAttack
from foveal.attacks.objectives import ObjectiveLike

__all__ = ["BIM"]


@ATTACKS.register("bim", help="BIM / I-FGSM (Linf) and I-FGM (L2): iterated steps, zero start")
class BIM(IterativeAttack):
    """Basic iterative method (I-FGSM for Linf, I-FGM with normalised-gradient steps for L2).

    Args:
        model: classifier on [0,1] images returning logits.
        eps: budget of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations (default 10).
        alpha: absolute step; default ``rel_alpha = 1 / steps`` (step ``eps / steps``).
        rel_alpha: step relative to each region's budget.
        restarts, objective, seed: see :class:`~foveal.attacks.Attack`.
        projection: ``"rescale"`` (default) or ``"exact"``; see :mod:`foveal.attacks.iterative`.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> x_adv = BIM(model, norm="l2", eps=0.5, steps=5)(x, y)
        >>> bool(((x_adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all())
        True
    """

    name = "bim"

    # Its own constructor because BIM takes no ``random_start`` (always from zero); a class
    # default could only change the default, and the command line checks this signature.
    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 10,
        alpha: float | None = None,
        rel_alpha: float | None = None,
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
            random_start=False,
            restarts=restarts,
            objective=objective,
            seed=seed,
            projection=projection,
        )
