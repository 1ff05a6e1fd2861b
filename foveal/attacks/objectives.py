"""Objectives the attacks climb: cross-entropy, margin, any callable, and sums of terms.

An objective maps an :class:`ObjectiveContext` (model, clean images, perturbation, adversarial
images, logits, labels, targeted flag) to one value per sample (N,); the engine *maximises* the
sum. Objectives compose with ``+`` and scale with ``*``, so a later term (a salience term
``lam * S(x + delta)``, a perceptual term, a detector's score) is one small class added to a
classification term: ``CrossEntropy() + 0.5 * SalienceTerm(...)``.

Targeting convention: the classification terms receive ``labels`` (the true labels, or the
target labels in a targeted attack) and flip their own sign when ``targeted`` is true (raise the
loss of the true class; lower the loss of the target class). Other terms ignore the flag. A plain
callable ``f(logits, labels) -> (N,)`` is treated as a classification loss and follows the same
convention.

Written by hand (a few lines each) so that every term returns per-sample values, which the engine
needs to keep the per-sample best over restarts.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foveal.registry import Registry

__all__ = [
    "OBJECTIVES",
    "CrossEntropy",
    "FromCallable",
    "Margin",
    "Objective",
    "ObjectiveContext",
    "ObjectiveLike",
    "Scaled",
    "Sum",
    "as_objective",
]


@dataclass(frozen=True)
class ObjectiveContext:
    """Everything an objective term may look at for one forward pass.

    Attributes:
        model: the attacked model (in eval mode).
        images: clean images x (N,C,H,W).
        delta: the perturbation (N,C,H,W), part of the autograd graph.
        adversarial: ``images + delta``.
        logits: ``model(adversarial)`` (N,K).
        labels: true labels, or the target labels when ``targeted`` (N,).
        targeted: whether the attack aims at ``labels`` rather than away from them.
    """

    model: nn.Module
    images: torch.Tensor
    delta: torch.Tensor
    adversarial: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    targeted: bool


class Objective(abc.ABC):
    """A per-sample quantity to maximise; compose with ``+`` and scale with ``*``."""

    @abc.abstractmethod
    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        """Per-sample values (N,) to maximise."""

    def __add__(self, other: ObjectiveLike) -> Sum:
        return Sum((self, as_objective(other)))

    def __radd__(self, other: ObjectiveLike) -> Sum:
        return Sum((as_objective(other), self))

    def __mul__(self, weight: float) -> Scaled:
        return Scaled(self, weight)

    __rmul__ = __mul__


class CrossEntropy(Objective):
    """Cross-entropy of the labels: raised (untargeted) or lowered (targeted, toward the target).

    Example:
        >>> z = torch.tensor([[2.0, 0.0]])
        >>> ctx = ObjectiveContext(nn.Identity(), z, z, z, z, torch.tensor([0]), False)
        >>> CrossEntropy()(ctx)
        tensor([0.1269])
    """

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        loss = F.cross_entropy(ctx.logits, ctx.labels, reduction="none")
        return -loss if ctx.targeted else loss

    def __repr__(self) -> str:
        return "CrossEntropy()"


class Margin(Objective):
    """C&W-style logit margin.

    Untargeted: ``max_{j != y} z_j - z_y`` (positive once misclassified); targeted:
    ``z_t - max_{j != t} z_j``. Capped at ``kappa`` (default: uncapped), which stops pushing a
    sample once it is misclassified with that confidence.

    Args:
        kappa: confidence cap (>= 0 or inf).
    """

    def __init__(self, *, kappa: float = math.inf) -> None:
        if not kappa >= 0:
            raise ValueError(f"kappa must be >= 0; got {kappa!r}")
        self.kappa = float(kappa)

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        z = ctx.logits
        own = z.gather(1, ctx.labels[:, None]).squeeze(1)
        others = z.scatter(1, ctx.labels[:, None], -math.inf).amax(1)
        value = own - others if ctx.targeted else others - own
        return value.clamp(max=self.kappa) if math.isfinite(self.kappa) else value

    def __repr__(self) -> str:
        return f"Margin(kappa={self.kappa:g})"


class FromCallable(Objective):
    """Wrap ``fn(logits, labels) -> (N,)``, a loss to raise for the true class.

    Targeted attacks maximise ``-fn(logits, target)``. ``fn`` must return per-sample values;
    for ``torch.nn`` losses pass ``reduction="none"``.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        if not callable(fn):
            raise TypeError(f"objective must be callable; got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        value = self.fn(ctx.logits, ctx.labels)
        if not isinstance(value, torch.Tensor) or value.shape != ctx.labels.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"objective must return per-sample values of shape ({ctx.labels.shape[0]},); "
                f"got {shape} (for torch.nn losses pass reduction='none')"
            )
        return -value if ctx.targeted else value

    def __repr__(self) -> str:
        return f"FromCallable({getattr(self.fn, '__name__', repr(self.fn))})"


class Scaled(Objective):
    """``weight * term``."""

    def __init__(self, term: Objective, weight: float) -> None:
        self.term = as_objective(term)
        self.weight = float(weight)
        if not math.isfinite(self.weight):
            raise ValueError(f"weight must be finite; got {weight!r}")

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        return self.weight * self.term(ctx)

    def __repr__(self) -> str:
        return f"{self.weight:g} * {self.term!r}"


class Sum(Objective):
    """The sum of several terms (nested sums are flattened)."""

    def __init__(self, terms: Iterable[Objective]) -> None:
        flat: list[Objective] = []
        for t in terms:
            flat.extend(t.terms if isinstance(t, Sum) else [as_objective(t)])
        if not flat:
            raise ValueError("Sum needs at least one term")
        self.terms: tuple[Objective, ...] = tuple(flat)

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        total = self.terms[0](ctx)
        for term in self.terms[1:]:
            total = total + term(ctx)
        return total

    def __repr__(self) -> str:
        return " + ".join(repr(t) for t in self.terms)


#: Objective names usable as strings (``objective="margin"``, ``--objective margin``).
OBJECTIVES: Registry[Callable[[], Objective]] = Registry("objective")
OBJECTIVES.register("ce", help="cross-entropy")(CrossEntropy)
OBJECTIVES.register("margin", help="C&W-style logit margin")(Margin)

#: What ``objective=`` accepts.
ObjectiveLike = Objective | str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def as_objective(objective: ObjectiveLike) -> Objective:
    """An :class:`Objective` from a registered name, an objective or a callable."""
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str):
        return OBJECTIVES.get(objective)()
    if callable(objective):
        return FromCallable(objective)
    raise TypeError(
        f"objective must be a name ({', '.join(OBJECTIVES.names())}), an Objective or a "
        f"callable; got {type(objective).__name__}"
    )
