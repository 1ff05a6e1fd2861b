"""JSMA (Papernot et al., "The Limitations of Deep Learning in Adversarial Settings", EuroS&P 2016).

An L0 attack: each iteration computes the forward derivatives ``a = dZ_t/dx`` (target class) and
``b = d(sum_{j != t} Z_j)/dx`` (all other classes) and picks the pair of features ``(p, q)`` from
the search domain maximising the saliency ``(a_p + a_q) * |b_p + b_q|`` subject to
``a_p + a_q > 0`` and ``b_p + b_q < 0`` (for ``theta > 0``; the signs flip for ``theta < 0``). Both
features change by ``theta`` (default 1: saturate), and a feature leaves the search domain once it
cannot move further that way. The attack stops at the target or when ``gamma`` (default 0.1) of
the features have been modified. A feature is one element of the (C,H,W) image, as in
torchattacks and ART. Derivatives are taken of the logits (Carlini & Wagner showed logits work
better than the softmax the paper used).

The target is an argument: ``attack(x, y, target=t)``. Helpers build targets without assuming a
number of classes: :func:`next_class_target` (``(y + 1) mod K``, torchattacks' default with
``K = 10`` hard-coded there) and :func:`random_target`. Untargeted calls aim at the runner-up class
of the clean image (the most likely class other than ``y``) and stop as soon as the prediction
differs from ``y``.

Bounding set: the search domain only holds features the set lets move (budget > 0, and not yet at
the box bound); after each change the perturbation is projected onto the set.

Written by hand on foveal's engine: torchattacks' version assumes 10 classes for untargeted use
and ART's round-trips through numpy. The D x D pair search is done per chunk of samples to bound
memory.
"""

from __future__ import annotations

import torch
from torch import nn

from foveal._validation import check_labels
from foveal.attacks._common import MinimalAttack, check_positive
from foveal.attacks.base import ATTACKS, Problem

__all__ = ["JSMA", "next_class_target", "random_target"]

#: Upper bound on the elements of one chunk's pair-saliency tensor (chunk * D * D).
_PAIR_BUDGET = 2**24


def next_class_target(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(labels + 1) mod num_classes``: the next class, as an explicit target.

    Example:
        >>> next_class_target(torch.tensor([0, 4]), 5)
        tensor([1, 0])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}")
    labels = check_labels(labels, labels.shape[0] if labels.ndim else -1, num_classes, "labels")
    return (labels + 1) % num_classes


def random_target(
    labels: torch.Tensor, num_classes: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A uniformly random class different from each label.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> t = random_target(torch.tensor([0, 1, 2]), 3, generator=gen)
        >>> bool((t != torch.tensor([0, 1, 2])).all())
        True
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}")
    labels = check_labels(labels, labels.shape[0] if labels.ndim else -1, num_classes, "labels")
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift.to(labels.device)) % num_classes


@ATTACKS.register("jsma", help="JSMA: L0 pixel-pair saliency map attack (explicit target)")
class JSMA(MinimalAttack):
    """Jacobian-based saliency map attack (L0).

    Args:
        model: classifier on [0,1] images returning logits.
        eps: optional Linf (``norm``) radius bounding each change; ``None``: the box only.
        norm: norm of ``eps`` and of the reported norms (default ``"linf"``).
        theta: change applied to each selected feature (default 1.0; negative decreases).
        gamma: maximum fraction of features modified (default 0.1).
        seed: accepted for a uniform interface; JSMA is deterministic.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,), target (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8) * 0.5, torch.tensor([0, 1])
        >>> adv = JSMA(model)(x, y, target=next_class_target(y, 4))
        >>> int(((adv != x).flatten(1).sum(1) <= 0.1 * 192).all())
        1
    """

    name = "jsma"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        theta: float = 1.0,
        gamma: float = 0.1,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, objective="margin", seed=seed)
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or theta == 0:
            raise ValueError(f"theta must be a non-zero number; got {theta!r}")
        self.theta = float(theta)
        self.gamma = check_positive(gamma, "gamma")
        if self.gamma > 1:
            raise ValueError(f"gamma must be in (0, 1]; got {gamma!r}")

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        x, bound = problem.images, problem.threat
        n = x.shape[0]
        if n == 0:
            return delta
        y = problem.true_labels
        with torch.no_grad():
            clean = problem.model(x)
        if problem.targeted:
            target = problem.labels
        else:
            target = clean.scatter(1, y[:, None], -torch.inf).argmax(1)
        flat_x = x.flatten(1)
        d = flat_x.shape[1]
        up = self.theta > 0
        movable = bound.mask_gradient(torch.ones_like(x)).flatten(1) != 0
        domain = movable & ((flat_x < 1) if up else (flat_x > 0))
        delta = torch.zeros_like(x)
        max_iters = int(d * self.gamma // 2)
        chunk = max(1, _PAIR_BUDGET // max(d * d, 1))
        off_diag = ~torch.eye(d, dtype=torch.bool, device=x.device)
        for _ in range(max_iters):
            adv = (x + delta).detach().requires_grad_(True)
            with torch.enable_grad():
                logits = problem.model(adv)
                pred = logits.detach().argmax(1)
                done = (pred == target) if problem.targeted else (pred != y)
                live = ~done & (domain.sum(1) >= 2)
                if not bool(live.any()):
                    break
                z_t = logits.gather(1, target[:, None]).squeeze(1)
                (a,) = torch.autograd.grad(z_t.sum(), adv, retain_graph=True)
                (b,) = torch.autograd.grad((logits.sum(1) - z_t).sum(), adv)
            a, b = a.flatten(1), b.flatten(1)
            if not up:
                a, b = -a, -b
            p_idx = torch.zeros(n, dtype=torch.long, device=x.device)
            q_idx = torch.zeros(n, dtype=torch.long, device=x.device)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            rows = live.nonzero().squeeze(1)
            for lo in range(0, rows.numel(), chunk):
                r = rows[lo : lo + chunk]
                alpha = a[r, :, None] + a[r, None, :]
                beta = b[r, :, None] + b[r, None, :]
                dom = domain[r]
                valid = dom[:, :, None] & dom[:, None, :] & off_diag & (alpha > 0) & (beta < 0)
                score = torch.where(valid, alpha * beta.abs(), torch.zeros_like(alpha))
                best = score.flatten(1).argmax(1)
                found[r] = valid.flatten(1).any(1)
                p_idx[r], q_idx[r] = best // d, best % d
            change = live & found
            if not bool(change.any()):
                break
            step = torch.zeros_like(flat_x)
            rows_c = change.nonzero().squeeze(1)
            step[rows_c, p_idx[rows_c]] = self.theta
            step[rows_c, q_idx[rows_c]] = self.theta
            before = delta.flatten(1).clone()
            proposed = (before + step).view_as(x)
            delta = torch.where(change.view(-1, 1, 1, 1), bound.project_(proposed), delta)
            after = delta.flatten(1)
            # a selected feature stays in the domain only if it moved the full theta
            full = (after - before - step).abs() <= 1e-12 * max(1.0, abs(self.theta))
            selected = step != 0
            domain &= ~(selected & ~full)
            # a selected feature at the box bound can move no further
            at_bound = (flat_x + after >= 1) if up else (flat_x + after <= 0)
            domain &= ~(selected & at_bound)
            # samples without a valid pair are exhausted
            domain[live & ~found] = False
        return delta
