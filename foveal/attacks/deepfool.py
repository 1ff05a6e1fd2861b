"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool
deep neural networks", CVPR 2016), L2 and Linf.

At each step the classifier is linearised around the current point; for every candidate class
``k`` the boundary with the true class ``y`` is the hyperplane ``f_k + <w_k, r> = 0`` with
``f_k = Z_k - Z_y`` and ``w_k = grad f_k``. The step goes to the closest of these hyperplanes:
``r = |f_k| / ||w_k||_2^2 * w_k`` (L2) or ``r = |f_k| / ||w_k||_1 * sign(w_k)`` (Linf, the dual
norm), each lengthened by 1e-4 as in the authors' code (and foolbox), the steps are summed,
and the adversarial image is ``x + (1 + overshoot) * sum r``. A sample
stops as soon as it is misclassified. Candidates are the ``candidates - 1`` most likely other
classes at the clean image (default 10 classes in all, overshoot 0.02, 50 steps, as in the paper
and foolbox).

Targeted use (an extension; DeepFool itself is untargeted): the only candidate is the target
``t`` and ``f = Z_t - max_{j != t} Z_j`` is linearised toward the target's boundary.

Bounding set: the gradients are masked to the pixels the set lets move before their norms are
taken (so the step is the closest boundary point within the set's subspace), and every iterate is
projected onto the set; success is counted only there.

Written by hand on foveal's engine (a few dozen lines) so that it shares the engine's validation,
region-aware sets and result type; foolbox's version is the reference for the defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from foveal.attacks._common import MinimalAttack, check_int, check_positive, logit_margin
from foveal.attacks.base import ATTACKS, Problem

__all__ = ["DeepFool"]


@ATTACKS.register("deepfool", help="DeepFool: steps to the linearised closest boundary (L2, Linf)")
class DeepFool(MinimalAttack):
    """DeepFool, L2 or Linf.

    Args:
        model: classifier on [0,1] images returning logits.
        eps: optional radius (in ``norm``) bounding the search; ``None`` (default): the box only.
        norm: ``"l2"`` (default) or ``"linf"``: the norm whose closest boundary is sought.
        steps: maximum iterations (default 50).
        overshoot: the summed step is scaled by ``1 + overshoot`` (default 0.02).
        candidates: number of classes considered, the true class included (default 10; fewer
            if the model has fewer classes).
        seed: accepted for a uniform interface; DeepFool is deterministic.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> result = DeepFool(model).run(x, y)
        >>> result.norms["image"].shape
        torch.Size([2])
    """

    name = "deepfool"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "l2",
        steps: int = 50,
        overshoot: float = 0.02,
        candidates: int = 10,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, objective="margin", seed=seed)
        self.steps = check_int(steps, "steps", 1)
        self.overshoot = check_positive(overshoot, "overshoot", allow_zero=True)
        self.candidates = check_int(candidates, "candidates", 2)

    def _classes(self, problem: Problem) -> torch.Tensor:
        """(N, k) candidate classes other than the base class (the true label)."""
        if problem.targeted:
            return problem.labels[:, None]
        with torch.no_grad():
            logits = problem.model(problem.images)
        k = min(self.candidates, logits.shape[1])
        masked = logits.scatter(1, problem.labels[:, None], -torch.inf)
        return masked.argsort(dim=1, descending=True, stable=True)[:, : k - 1]

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        x, y, targeted = problem.images, problem.labels, problem.targeted
        bound = problem.threat
        n = x.shape[0]
        if n == 0:
            return delta
        classes = self._classes(problem)
        total = torch.zeros_like(x)
        delta = torch.zeros_like(x)
        for _ in range(self.steps):
            adv = (x + delta).detach().requires_grad_(True)
            with torch.enable_grad():
                logits = problem.model(adv)
                done = logit_margin(logits.detach(), y, targeted) > 0
                if bool(done.all()):
                    break
                if targeted:
                    others = logits.scatter(1, y[:, None], -torch.inf).argmax(1)
                    diffs = [
                        logits.gather(1, y[:, None]).squeeze(1)
                        - logits.gather(1, others[:, None]).squeeze(1)
                    ]
                else:
                    own = logits.gather(1, y[:, None]).squeeze(1)
                    diffs = [
                        logits.gather(1, classes[:, k : k + 1]).squeeze(1) - own
                        for k in range(classes.shape[1])
                    ]
                grads = []
                for k, f in enumerate(diffs):
                    (g,) = torch.autograd.grad(f.sum(), adv, retain_graph=k < len(diffs) - 1)
                    grads.append(bound.mask_gradient(g))
            f_all = torch.stack([f.detach() for f in diffs], 1)  # (N, k)
            w_all = torch.stack(grads, 1)  # (N, k, C, H, W)
            flat = w_all.flatten(2)
            dual = flat.norm(dim=2) if self.norm == "l2" else flat.abs().sum(2)
            dist = f_all.abs() / (dual + 1e-8)
            best = dist.argmin(1)
            pick = best.view(n, 1, 1, 1, 1).expand(n, 1, *x.shape[1:])
            w = w_all.gather(1, pick).squeeze(1)
            f = f_all.gather(1, best[:, None]).squeeze(1)
            d = dual.gather(1, best[:, None]).squeeze(1)
            # step length: the distance plus 1e-4, as in the authors' code (keeps iterates
            # from stalling on the boundary)
            length = f.abs() / (d + 1e-8) + 1e-4
            if self.norm == "l2":
                step = (length / (d + 1e-8)).view(n, 1, 1, 1) * w
            else:
                step = length.view(n, 1, 1, 1) * w.sign()
            total = torch.where(done.view(n, 1, 1, 1), total, total + step)
            delta = torch.where(
                done.view(n, 1, 1, 1), delta, bound.project_((1 + self.overshoot) * total)
            )
        return delta
