"""APGD-CE, APGD-DLR and APGD-T (Croce & Hein, "Reliable evaluation of adversarial robustness with
an ensemble of diverse parameter-free attacks", ICML 2020), on every perturbation set.

Auto-PGD (the paper's Algorithm 1) is PGD with momentum and a step size that adapts itself:

- ``z = P(x_k + eta * ascent(grad))``, ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))``
  with momentum ``a = 0.75`` (the first step is a plain step);
- the step starts at ``eta = 2 * budget`` and is halved at checkpoints ``w_j = ceil(p_j * N)``,
  ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, for the samples
  where (1) the objective increased in fewer than ``rho = 0.75`` of the steps since the last
  checkpoint, or (2) the step was not halved at the last checkpoint and the best objective has
  not improved since; those samples restart from their best point;
- the result is the last adversarial point found, otherwise the point of highest objective.

Region-aware: ``ascent`` and ``P`` are the bound set's, and ``eta`` is a per-sample factor times
the set's ``budget`` (the per-element radius), so the step is ``2 eps_r`` in each region ``r`` of
a region budget (Tong et al.'s (2020) dual set) and 0 on frozen pixels.

The DLR objective (:class:`DLR`, registered as objective ``"dlr"``): untargeted
``(max_{j != y} z_j - z_y) / (z_pi1 - z_pi3)``; targeted ``(z_t - max_{j != t} z_j) /
(z_pi1 - (z_pi3 + z_pi4) / 2)`` with ``z_pi`` the sorted logits. The paper's targeted form has
``z_y`` where this one has ``max_{j != t} z_j``; the two agree while ``y`` is the top class and
the form here needs no true label (it is an ordinary :class:`~foveal.attacks.Objective`).

APGD-T (:class:`APGDT`) runs targeted APGD-DLR toward each of the ``n_targets`` most likely other
classes of the clean image in turn, on the points not yet misclassified.

Written by hand from the paper (the reference AutoAttack is not on PyPI; torchattacks' port does
not take foveal's perturbation sets). Randomness: random starts come from the engine's per-sample
generators; APGD-T's later targets use per-sample generators salted by the target rank.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from foveal.attacks._common import check_int, check_positive, random_start, sub_problem
from foveal.attacks.base import ATTACKS, Attack, Problem
from foveal.attacks.objectives import OBJECTIVES, Objective, ObjectiveContext, ObjectiveLike

__all__ = ["APGD", "APGDDLR", "APGDT", "DLR", "apgd_checkpoints"]


class DLR(Objective):
    """Difference-of-logits-ratio loss (to maximise); targeted form when ``ctx.targeted``.

    Example:
        >>> z = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
        >>> ctx = ObjectiveContext(nn.Identity(), z, z, z, z, torch.tensor([0]), False)
        >>> DLR()(ctx)
        tensor([-0.6667])
    """

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        z = ctx.logits
        k = z.shape[1]
        ordered = z.sort(1, descending=True).values
        own = z.gather(1, ctx.labels[:, None]).squeeze(1)
        others = z.scatter(1, ctx.labels[:, None], -math.inf).amax(1)
        top = ordered[:, 0]
        third = ordered[:, min(2, k - 1)]
        if ctx.targeted:
            fourth = ordered[:, min(3, k - 1)]
            return (own - others) / (top - (third + fourth) / 2 + 1e-12)
        return (others - own) / (top - third + 1e-12)

    def __repr__(self) -> str:
        return "DLR()"


OBJECTIVES.register("dlr", help="difference-of-logits ratio (APGD-DLR)")(DLR)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j * steps)`` (j >= 1) where the step size may be halved.

    Example:
        >>> apgd_checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
    """
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    points = sorted({math.ceil(q * steps - 1e-9) for q in p[1:] if q <= 1})
    return [w for w in points if 0 < w <= steps]


def _gradients(
    problem: Problem, delta: torch.Tensor, eot_iter: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient, objective and logits, averaged over ``eot_iter`` passes (EOT)."""
    grad, loss, logits = problem.gradient_and_logits(delta)
    for _ in range(eot_iter - 1):
        g, v, z = problem.gradient_and_logits(delta)
        grad, loss, logits = grad + g, loss + v, logits + z
    if eot_iter > 1:
        grad, loss, logits = grad / eot_iter, loss / eot_iter, logits / eot_iter
    return grad, loss, logits


def run_apgd(
    problem: Problem,
    delta: torch.Tensor,
    *,
    steps: int,
    rho: float = 0.75,
    momentum: float = 0.75,
    eot_iter: int = 1,
    is_success: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Algorithm 1 of Croce & Hein (2020) from ``delta`` (a member of the set); see the module.

    Args:
        problem: the bound problem (its objective is maximised).
        delta: starting perturbation (N,C,H,W).
        steps: iterations.
        rho: checkpoint condition 1 threshold (default 0.75).
        momentum: weight ``a`` of the new point (default 0.75).
        eot_iter: gradient samples averaged per step (> 1 for randomized models).
        is_success: predictions (N,) -> (N,) bool; default ``problem.is_success``.

    Returns:
        The last successful perturbation where one was found, else the best-objective one.
    """
    success_of = problem.is_success if is_success is None else is_success
    bound = problem.threat
    n = delta.shape[0]
    shape = (n, 1, 1, 1)
    checkpoints = set(apgd_checkpoints(steps))
    factor = torch.full(shape, 2.0, device=delta.device, dtype=delta.dtype)
    grad, loss, logits = _gradients(problem, delta, eot_iter)
    best, best_loss, best_grad = delta.clone(), loss.clone(), grad.clone()
    success = success_of(logits.argmax(1))
    adversarial = delta.clone()
    previous = delta.clone()
    last_loss = loss.clone()
    increases = torch.zeros(n, device=delta.device, dtype=delta.dtype)
    check_loss = best_loss.clone()
    reduced = torch.zeros(n, dtype=torch.bool, device=delta.device)
    last_check = 0
    for k in range(steps):
        z = bound.project_((bound.ascent(grad) * (factor * bound.budget)).add_(delta))
        if k == 0:
            new = z
        else:
            # delta + a (z - delta) + (1 - a)(delta - previous), with few temporaries
            new = z.sub_(delta).mul_(momentum).add_(delta.sub(previous).mul_(1 - momentum))
            new = bound.project_(new.add_(delta))
        previous, delta = delta, new
        grad, loss, logits = _gradients(problem, delta, eot_iter)
        now = success_of(logits.argmax(1))
        if bool(now.any()):
            adversarial[now] = delta[now]
            success |= now
        increases += (loss > last_loss).to(increases.dtype)
        last_loss = loss
        improved = loss > best_loss
        if bool(improved.any()):
            best[improved] = delta[improved]
            best_grad[improved] = grad[improved]
            best_loss = torch.where(improved, loss, best_loss)
        if k + 1 in checkpoints:
            window = k + 1 - last_check
            halve = (increases < rho * window) | (~reduced & (check_loss >= best_loss))
            reduced = halve
            check_loss = best_loss.clone()
            increases.zero_()
            last_check = k + 1
            factor = torch.where(halve.view(shape), factor / 2, factor)
            delta = torch.where(halve.view(shape), best, delta)
            previous = torch.where(halve.view(shape), best, previous)
            grad = torch.where(halve.view(shape), best_grad, grad)
    return torch.where(success.view(shape), adversarial, best)


class _APGDBase(Attack):
    """APGD's constructor and algorithm; the registered classes differ in class defaults."""

    #: ``objective`` when the constructor gets ``None``.
    default_objective: ClassVar[str] = "ce"
    default_random_start = True

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 100,
        objective: ObjectiveLike | None = None,
        rho: float = 0.75,
        momentum: float = 0.75,
        eot_iter: int = 1,
        random_start: bool | None = None,
        restarts: int = 1,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            objective=self.default_objective if objective is None else objective,
            random_start=random_start,
            restarts=restarts,
            seed=seed,
        )
        self.steps = check_int(steps, "steps", 1)
        self.rho = check_positive(rho, "rho")
        if self.rho > 1:
            raise ValueError(f"rho must be in (0, 1]; got {rho!r}")
        self.momentum = check_positive(momentum, "momentum")
        if self.momentum > 1:
            raise ValueError(f"momentum must be in (0, 1]; got {momentum!r}")
        self.eot_iter = check_int(eot_iter, "eot_iter", 1)

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        return run_apgd(
            problem,
            delta,
            steps=self.steps,
            rho=self.rho,
            momentum=self.momentum,
            eot_iter=self.eot_iter,
        )


_APGD_DOC = """

    Args:
        model: classifier on [0,1] images returning logits.
        eps: budget of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations (default 100, as in AutoAttack).
        objective: the objective (default ``{objective}``).
        rho: checkpoint threshold (default 0.75).
        momentum: momentum weight (default 0.75).
        eot_iter: gradients averaged per step (EOT for randomized models; default 1).
        random_start: start at a random point of the set (default True).
        restarts: runs per sample; each keeps its best.
        seed: random-start seed (None: fresh each call).

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from foveal.threats import dual
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> fg = torch.zeros(2, 1, 8, 8); fg[..., 2:6, 2:6] = 1
        >>> threat = dual(fg, 4 / 255, 16 / 255)
        >>> adv = {cls}(model, steps=10)(x, y, threat=threat)
        >>> bool(threat.bind(x).contains(adv - x).all())
        True
"""


@ATTACKS.register("apgd-ce", help="APGD-CE: auto-step PGD with momentum, cross-entropy")
class APGD(_APGDBase):
    name = "apgd-ce"


APGD.__doc__ = "Auto-PGD with the cross-entropy objective (any objective may be given)." + (
    _APGD_DOC.format(objective='"ce"', cls="APGD")
)


@ATTACKS.register("apgd-dlr", help="APGD-DLR: auto-step PGD on the difference-of-logits ratio")
class APGDDLR(_APGDBase):
    name = "apgd-dlr"
    default_objective = "dlr"


APGDDLR.__doc__ = "Auto-PGD with the DLR objective (scale-invariant in the logits)." + (
    _APGD_DOC.format(objective='"dlr"', cls="APGDDLR")
)


@ATTACKS.register("apgd-t", help="APGD-T: targeted APGD-DLR toward each of the top other classes")
class APGDT(_APGDBase):
    """Targeted APGD-DLR toward the ``n_targets`` most likely other classes, one after another.

    Untargeted calls succeed on misclassification: target ``r`` (the ``r``-th most likely class
    other than the label at the clean image) is attacked only on the points that the earlier
    targets did not break. A targeted call runs one targeted APGD-DLR toward the given target.

    Args:
        model: classifier on [0,1] images returning logits.
        eps: budget of the default ball (default 8/255 Linf, 0.5 L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations per target (default 100).
        n_targets: number of target classes (default 9; at most classes - 1).
        objective: the targeted objective (default ``"dlr"``).
        rho, momentum, eot_iter, random_start, restarts, seed: see :class:`APGD`.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> APGDT(model, steps=5, n_targets=2)(x, y).shape
        torch.Size([2, 3, 8, 8])
    """

    name = "apgd-t"
    default_objective = "dlr"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 100,
        n_targets: int = 9,
        objective: ObjectiveLike | None = None,
        rho: float = 0.75,
        momentum: float = 0.75,
        eot_iter: int = 1,
        random_start: bool | None = None,
        restarts: int = 1,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            steps=steps,
            objective=objective,
            rho=rho,
            momentum=momentum,
            eot_iter=eot_iter,
            random_start=random_start,
            restarts=restarts,
            seed=seed,
        )
        self.n_targets = check_int(n_targets, "n_targets", 1)

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        if problem.targeted or problem.images.shape[0] == 0:
            return super().perturb(problem, delta)
        x, y = problem.images, problem.true_labels
        with torch.no_grad():
            clean = problem.model(x)
        order = clean.scatter(1, y[:, None], -math.inf).argsort(dim=1, descending=True, stable=True)
        targets = order[:, : min(self.n_targets, clean.shape[1] - 1)]
        out = delta.clone()
        _, logits = problem.evaluate(delta)
        robust = logits.argmax(1) == y
        seed = 0 if self.seed is None else self.seed

        for rank in range(targets.shape[1]):
            index = robust.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            if problem.spec is None:
                index = torch.arange(x.shape[0], device=x.device)
            sub = (
                sub_problem(
                    problem,
                    index,
                    labels=targets[index, rank],
                    targeted=True,
                    objective=self.objective,
                )
                if problem.spec is not None
                else _retarget(problem, targets[:, rank], self.objective)
            )
            if rank == 0:
                start = delta[index]
            elif self.random_start:
                start = random_start(sub, seed, 1000 + rank)
            else:
                start = torch.zeros_like(sub.images)
            sub_y = y[index]
            found = run_apgd(
                sub,
                start,
                steps=self.steps,
                rho=self.rho,
                momentum=self.momentum,
                eot_iter=self.eot_iter,
                is_success=functools.partial(_differs, sub_y),
            )
            found = sub.threat.project_(found)
            _, sub_logits = sub.evaluate(found)
            broken = sub_logits.argmax(1) != sub_y
            keep = broken | robust[index]
            out[index] = torch.where(keep.view(-1, 1, 1, 1), found, out[index])
            robust[index] = robust[index] & ~broken
        return out


def _differs(labels: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    return predictions != labels


def _retarget(problem: Problem, labels: torch.Tensor, objective: Objective) -> Problem:
    """The whole problem, targeted toward ``labels`` (used when no unbound set is known)."""
    return Problem(
        problem.model,
        problem.images,
        labels,
        problem.true_labels,
        True,
        problem.threat,
        objective,
        context=problem.context,
    )
