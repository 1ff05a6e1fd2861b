"""A worst-case ensemble in the manner of AutoAttack (Croce & Hein, ICML 2020), on every set.

``version="standard"``: APGD-CE, then APGD-T (targeted DLR toward the 9 most likely other
classes), then Square (5000 queries), each run only on the points that the earlier members did not
break; a point counts as robust only if every member fails on it. ``version="rand"`` (for
randomized models): APGD-CE and APGD-DLR with gradients averaged over ``eot_iter`` = 20 samples
(expectation over transformation). FAB-T, part of the reference "standard" list, is available
through the optional torchattacks adapter (``fab=True``; see :mod:`foveal.attacks.external`).

After each member the robust accuracy is logged (``logging``, logger ``foveal.attacks.ensemble``);
at the end the result is checked as AutoAttack does: no NaN, inside [0,1], and the largest
perturbation per region within the budget (``threat.contains``); a failed check warns.

Targeted calls run the members' targeted forms toward the given target (APGD-CE and APGD-DLR
targeted, Square targeted). Randomness: every member is seeded from ``seed`` and the image bytes.

Written by hand: the reference AutoAttack is not on PyPI and torchattacks' port does not take
foveal's perturbation sets.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any

import torch
from torch import nn

from foveal.attacks._common import random_start, sub_problem
from foveal.attacks.apgd import APGD, APGDDLR, APGDT
from foveal.attacks.base import ATTACKS, Attack, Problem
from foveal.attacks.square import Square

__all__ = ["AutoAttack"]

logger = logging.getLogger(__name__)

_VERSIONS = ("standard", "rand")


@ATTACKS.register("autoattack", help="worst case of APGD-CE, APGD-T and Square (AutoAttack-style)")
class AutoAttack(Attack):
    """Worst-case ensemble of strong attacks (AutoAttack "standard" or "rand").

    Args:
        model: classifier on [0,1] images returning logits.
        eps: budget of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"``.
        version: ``"standard"`` (APGD-CE, APGD-T, Square) or ``"rand"`` (APGD-CE, APGD-DLR with
            EOT).
        steps: APGD iterations (default 100).
        n_targets: APGD-T target classes (default 9).
        n_queries: Square queries (default 5000).
        eot_iter: gradient samples per step in the "rand" version (default 20).
        fab: add FAB-T before Square through the torchattacks adapter (needs the extra
            ``foveal[torchattacks]``; default False).
        seed: seed of the members' randomness (None: fresh each call).

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> attack = AutoAttack(model, eps=4 / 255, steps=5, n_targets=2, n_queries=20)
        >>> result = attack.run(x, y)
        >>> bool((result.norms["image"] <= 4 / 255 + 1e-6).all())
        True
    """

    name = "autoattack"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        version: str = "standard",
        steps: int = 100,
        n_targets: int = 9,
        n_queries: int = 5000,
        eot_iter: int = 20,
        fab: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, objective="ce", seed=seed)
        if version not in _VERSIONS:
            raise ValueError(f"version must be one of {_VERSIONS}; got {version!r}")
        self.version = version
        self.steps = steps
        self.n_targets = n_targets
        self.n_queries = n_queries
        self.eot_iter = eot_iter
        self.fab = bool(fab)
        kw: dict[str, Any] = {"eps": self.eps, "norm": self.norm, "steps": steps, "seed": seed}
        members: list[tuple[str, Attack]]
        if version == "standard":
            members = [
                ("apgd-ce", APGD(model, **kw)),
                ("apgd-t", APGDT(model, n_targets=n_targets, **kw)),
                (
                    "square",
                    Square(model, eps=self.eps, norm=self.norm, n_queries=n_queries, seed=seed),
                ),
            ]
            if self.fab:
                from foveal.attacks.external import TorchattacksAttack

                fab_attack = TorchattacksAttack(
                    model,
                    attack="FAB",
                    eps=self.eps,
                    norm=self.norm,
                    seed=seed,
                    params={"multi_targeted": True, "n_classes": n_targets + 1, "steps": steps},
                )
                members.insert(2, ("fab-t", fab_attack))
        else:
            members = [
                ("apgd-ce", APGD(model, eot_iter=eot_iter, **kw)),
                ("apgd-dlr", APGDDLR(model, eot_iter=eot_iter, **kw)),
            ]
        self._members = members

    @property
    def members(self) -> list[str]:
        """Names of the member attacks, in the order they run."""
        return [name for name, _ in self._members]

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        x = problem.images
        n = x.shape[0]
        if n == 0:
            return delta
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        _, logits = problem.evaluate(torch.zeros_like(x))
        robust = ~problem.is_success(logits.argmax(1))
        out = torch.zeros_like(x)
        logger.info("%s: clean accuracy %.2f%% (%d images)", self.name, _pct(robust), n)
        for salt, (name, member) in enumerate(self._members):
            index = robust.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            start_time = time.perf_counter()
            if problem.spec is not None:
                sub = sub_problem(problem, index, objective=member.objective)
            else:
                index = torch.arange(n, device=x.device)
                sub = Problem(
                    problem.model,
                    x,
                    problem.labels,
                    problem.true_labels,
                    problem.targeted,
                    problem.threat,
                    member.objective,
                    context=problem.context,
                )
            if member.random_start:
                start = random_start(sub, seed, 100 + salt)
            else:
                start = torch.zeros_like(sub.images)
            found = sub.threat.project_(member.perturb(sub, start))
            _, sub_logits = sub.evaluate(found)
            broken = sub.is_success(sub_logits.argmax(1)) & robust[index]
            out[index] = torch.where(broken.view(-1, 1, 1, 1), found, out[index])
            robust[index] = robust[index] & ~broken
            logger.info(
                "%s: robust accuracy %.2f%% after %s (%.1f s)",
                self.name,
                _pct(robust),
                name,
                time.perf_counter() - start_time,
            )
        self._check(problem, out)
        return out

    def _check(self, problem: Problem, delta: torch.Tensor) -> None:
        """AutoAttack's final checks: NaN, range and the largest norm per region."""
        adv = problem.images + delta
        if bool(torch.isnan(adv).any()):
            warnings.warn(
                f"{self.name}: the adversarial images contain NaN", RuntimeWarning, stacklevel=3
            )
        lo, hi = float(adv.min()), float(adv.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            warnings.warn(
                f"{self.name}: adversarial images leave [0,1]: min={lo:g}, max={hi:g}",
                RuntimeWarning,
                stacklevel=3,
            )
        for region, norms in problem.threat.norms(delta).items():
            logger.info(
                "%s: max %s norm in %s: %.6g",
                self.name,
                problem.threat.norm,
                region,
                float(norms.max()),
            )
        outside = ~problem.threat.contains(delta, atol=1e-5)
        if bool(outside.any()):
            warnings.warn(
                f"{self.name}: {int(outside.sum())} perturbations are outside the set",
                RuntimeWarning,
                stacklevel=3,
            )


def _pct(robust: torch.Tensor) -> float:
    return 100.0 * float(robust.float().mean()) if robust.numel() else math.nan
