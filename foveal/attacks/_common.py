"""Small helpers shared by the strong attacks (C&W, DeepFool, JSMA, APGD, Square, the ensemble).

Written by hand: each is a few lines, and keeping them in one place keeps the attacks' notions of
"margin", "unconstrained set" and "per-sample randomness" identical.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from foveal._validation import check_eps
from foveal.attacks.base import (
    DEFAULT_EPS,
    Attack,
    Context,
    Problem,
    _image_keys,
    sample_generators,
)
from foveal.attacks.objectives import Objective, ObjectiveLike
from foveal.threats import Threat, ball, box_threat

__all__ = [
    "MinimalAttack",
    "box_threat",
    "check_int",
    "check_positive",
    "logit_margin",
    "per_sample_generators",
    "random_start",
    "sub_problem",
    "uniform_rows",
]


def logit_margin(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(N,) margin that is > 0 exactly when the attack has succeeded (ties aside).

    Untargeted: ``max_{j != y} z_j - z_y``; targeted toward ``t``: ``z_t - max_{j != t} z_j``.
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -math.inf).amax(1)
    return own - others if targeted else others - own


def per_sample_generators(
    problem: Problem, seed: int | None, salt: int = 0
) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from ``seed``, ``salt`` and the image's bytes.

    As for the engine's random starts, a sample's random stream does not depend on the other
    images of the batch, so batched runs equal per-sample runs.
    """
    base = 0 if seed is None else seed
    return sample_generators(_image_keys(problem.images), base, salt)


def uniform_rows(generators: list[torch.Generator], k: int, like: torch.Tensor) -> torch.Tensor:
    """(N, k) uniforms in [0,1), row ``i`` from ``generators[i]`` (float64, ``like``'s device)."""
    if not generators:
        return torch.empty((0, k), dtype=torch.float64, device=like.device)
    rows = [torch.rand(k, generator=g, dtype=torch.float64) for g in generators]
    return torch.stack(rows).to(like.device)


def check_int(value: object, name: str, low: int) -> int:
    """``value`` as an int >= ``low``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return value


def check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0); ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(
            f"{name} must be a finite number {'>=' if allow_zero else '>'} 0; got {value!r}"
        )
    return v


def sub_problem(
    problem: Problem,
    index: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    targeted: bool | None = None,
    objective: Objective | None = None,
) -> Problem:
    """The same problem for the samples ``index`` (the set re-bound to them, the context sliced).

    Needs ``problem.spec`` (set by the engine); ``labels``, ``targeted`` and ``objective``
    replace the problem's own (``labels`` are given for the selected samples).
    """
    if problem.spec is None:
        raise ValueError("sub_problem needs problem.spec (the unbound set); got None")
    x = problem.images[index]
    bound = problem.spec.subset(index.cpu()).bind_checked(x)  # a subset of checked images
    return Problem(
        problem.model,
        x,
        problem.labels[index] if labels is None else labels,
        problem.true_labels[index],
        problem.targeted if targeted is None else targeted,
        bound,
        problem.objective if objective is None else objective,
        spec=problem.spec.subset(index.cpu()),
        context=problem.context.subset(index),
    )


def random_start(problem: Problem, seed: int, salt: int) -> torch.Tensor:
    """A random member of ``problem``'s set, drawn per sample from ``(seed, salt, image)``."""
    if problem.images.shape[0] == 0:
        return torch.zeros_like(problem.images)
    return problem.threat.sample(sample_generators(_image_keys(problem.images), seed, salt))


class MinimalAttack(Attack):
    """Base of the minimal-perturbation attacks (C&W, DeepFool, JSMA).

    They search for the smallest adversarial perturbation inside the box ``[0,1]``. With
    ``eps=None`` (default) the set is the box alone (:func:`box_threat`, norms reported in
    ``norm``); with a number it is the ``norm`` ball of radius ``eps`` intersected with the box,
    and a set given per call (``threat=``) bounds the search the same way: every candidate is
    projected onto the set and counts as adversarial only there.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None,
        norm: str,
        objective: ObjectiveLike,
        seed: int | None,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, objective=objective, seed=seed)
        self.bounded = eps is not None
        if eps is not None:
            self.eps = check_eps(eps, "eps")
        else:
            self.eps = DEFAULT_EPS[self.norm]

    def threat_for(self, images: torch.Tensor, context: Context, threat: Threat | None) -> Threat:
        if threat is not None:
            return threat
        return ball(self.norm, self.eps) if self.bounded else box_threat(images, self.norm)

    def config(self) -> dict[str, Any]:
        out = super().config()
        if not self.bounded:
            out["eps"] = None
        return out
