"""PGD (Madry et al., ICLR 2018): BIM from a random point of the set, with restarts.

Default step ``2.5 * eps / steps`` (Madry et al.'s rule, ``rel_alpha = 2.5 / steps``), so the
attack can cross the whole ball whatever the number of steps. Works with every perturbation set:
``PGD(model)(x, y, threat=dual(mask, 4/255, 20/255))`` is dual-perturbation PGD (Tong et al. 2020)
and ``threat=frozen(salient, 8/255)`` is the inner attack of SIP-AT (Redgrave & Czajka 2024).
"""

from __future__ import annotations

from foveal.attacks.base import ATTACKS
from foveal.attacks.iterative import IterativeAttack

__all__ = ["PGD"]


@ATTACKS.register("pgd", help="PGD: projected steepest ascent from a random start, restarts")
class PGD(IterativeAttack):
    """Projected gradient descent (ascent) on any perturbation set, Linf or L2.

    Args:
        model: classifier on [0,1] images returning logits.
        eps: budget of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations (default 10).
        alpha: absolute step (torchattacks' ``alpha``); default ``rel_alpha = 2.5 / steps``.
        rel_alpha: step relative to each region's budget.
        random_start: start uniformly inside the set (default True, ``default_random_start``).
        restarts: runs with different random starts; each sample keeps its best.
        objective: ``"ce"`` (default), ``"margin"``, an Objective or a callable.
        seed: random-start seed (None: fresh each call).
        projection: ``"rescale"`` (rescale, then clip, as torchattacks; default) or ``"exact"``
            (Euclidean projection after each step); see :mod:`foveal.attacks.iterative`.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from foveal.threats import frozen
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> salient = torch.zeros(2, 1, 8, 8); salient[..., 2:5, 2:5] = 1
        >>> result = PGD(model, steps=5).run(x, y, threat=frozen(salient, 8 / 255))
        >>> bool((result.adversarial[..., 2:5, 2:5] == x[..., 2:5, 2:5]).all())
        True
    """

    name = "pgd"
    default_rel_alpha_times_steps = 2.5
    default_random_start = True
