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

Masked use of any attack needs no new class: restrict it to regions or freeze pixels through
the set. PGD that never touches the salient pixels of a SIP mask (Redgrave & Czajka 2024), or that
perturbs only the object::

    from foveal.threats import frozen
    x_adv = PGD(model, eps=8 / 255)(x, y, threat=frozen(salient, 8 / 255))    # salient fixed
    x_obj = BIM(model, norm="l2", eps=1.0)(x, y, threat=frozen(1 - obj, 1.0))  # object only

Per-batch masks reach the attacks that read them (``uses_masks``) as ``attack(x, y, masks=m)``;
others refuse them. Such an attack implements its idea through the engine's hooks ``prepare``,
``threat_for`` and ``objective_for``, which see a frozen per-batch :class:`Context` (see
:mod:`foveal.attacks.base`).

Saliency-guided attacks: :class:`DualPerturbation` (Tong et al. 2020: eps_F / eps_B and a salience
term), :class:`SAFGM` / :class:`SAIFGM` / :class:`MSAIFGM` (Dong et al. 2020: superpixel subspace
cropped by CAM) and :class:`PerceptualBall` (Elliott et al. 2019: L-BFGS on margin + perceptual
loss); see ``docs/attacks.md``.
"""

from __future__ import annotations

from foveal.attacks.apgd import APGD, APGDDLR, APGDT, DLR
from foveal.attacks.base import (
    ATTACKS,
    DEFAULT_EPS,
    Attack,
    AttackResult,
    Context,
    Problem,
    eval_mode,
    sample_generators,
)
from foveal.attacks.bim import BIM
from foveal.attacks.cw import CW
from foveal.attacks.deepfool import DeepFool
from foveal.attacks.dual import DualPerturbation, ExpectationOverNoise, SalienceTerm
from foveal.attacks.ensemble import AutoAttack
from foveal.attacks.fgsm import FGSM
from foveal.attacks.iterative import IterativeAttack
from foveal.attacks.jsma import JSMA, next_class_target, random_target
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
from foveal.attacks.perceptual import PerceptualBall, perceptual_layers
from foveal.attacks.pgd import PGD
from foveal.attacks.sai import MSAIFGM, SAFGM, SAIFGM, SuperpixelAttack, sai_budget
from foveal.attacks.square import Square
from foveal.attacks.sweep import SweepResult, sweep

__all__ = [
    "APGD",
    "APGDDLR",
    "APGDT",
    "ATTACKS",
    "BIM",
    "CW",
    "DEFAULT_EPS",
    "DLR",
    "FGSM",
    "JSMA",
    "MIM",
    "MSAIFGM",
    "OBJECTIVES",
    "PGD",
    "SAFGM",
    "SAIFGM",
    "Attack",
    "AttackResult",
    "AutoAttack",
    "Context",
    "CrossEntropy",
    "DeepFool",
    "DualPerturbation",
    "ExpectationOverNoise",
    "FromCallable",
    "IterativeAttack",
    "Margin",
    "Objective",
    "ObjectiveContext",
    "ObjectiveLike",
    "PerceptualBall",
    "Problem",
    "SalienceTerm",
    "Scaled",
    "Square",
    "Sum",
    "SuperpixelAttack",
    "SweepResult",
    "as_objective",
    "eval_mode",
    "next_class_target",
    "perceptual_layers",
    "random_target",
    "sai_budget",
    "sample_generators",
    "sweep",
]
