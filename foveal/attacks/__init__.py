"""Attacks: an engine that owns validation, projection and bookkeeping, and the classic attacks.

Every attack optimises an objective over a perturbation set (:mod:`foveal.threats`). The
engine (:class:`Attack`) does everything that must hold for all attacks; an attack class only
says how to step. FGSM, BIM, MIM and PGD work with every set, so "PGD on the dual set" is
``PGD(model)(x, y, threat=dual(mask, 4/255, 20/255))`` and needs no new class.

Usage (familiar to torchattacks users)::

    attack = PGD(model, eps=8 / 255, steps=20)
    x_adv = attack(x, y)                        # adversarial images
    result = attack.run(x, y, target=t)         # AttackResult: success, norms, loss
    curve = sweep(attack, x, y, [1 / 255, 2 / 255, 4 / 255, 8 / 255])

``ATTACKS`` maps names to classes (``ATTACKS.get("pgd")``); the CLI and the tests use it.
"""

from __future__ import annotations

from foveal.attacks.base import (
    ATTACKS,
    DEFAULT_EPS,
    Attack,
    AttackResult,
    Problem,
    eval_mode,
    sample_generators,
)
from foveal.attacks.bim import BIM
from foveal.attacks.fgsm import FGSM
from foveal.attacks.iterative import IterativeAttack
from foveal.attacks.mim import MIM
from foveal.attacks.objectives import (
    OBJECTIVES,
    CrossEntropy,
    FromCallable,
    Margin,
    Objective,
    ObjectiveContext,
    ObjectiveLike,
    Scaled,
    Sum,
    as_objective,
)
from foveal.attacks.pgd import PGD
from foveal.attacks.sweep import SweepResult, sweep

__all__ = [
    "ATTACKS",
    "BIM",
    "DEFAULT_EPS",
    "FGSM",
    "MIM",
    "OBJECTIVES",
    "PGD",
    "Attack",
    "AttackResult",
    "CrossEntropy",
    "FromCallable",
    "IterativeAttack",
    "Margin",
    "Objective",
    "ObjectiveContext",
    "ObjectiveLike",
    "Problem",
    "Scaled",
    "Sum",
    "SweepResult",
    "as_objective",
    "eval_mode",
    "sample_generators",
    "sweep",
]
