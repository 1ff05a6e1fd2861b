"""C&W-L2 (Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", S&P 2017).

Minimise ``||x' - x||_2^2 + c * max(Z_y - max_{j != y} Z_j + kappa, 0)`` (targeted:
``max(max_{j != t} Z_j - Z_t + kappa, 0)``) over ``x' = (tanh(w) + 1) / 2``, so the box [0,1] holds
by construction. Adam (lr 0.01) optimises ``w``; an outer binary search over the constant ``c``
(start 1e-3, times 10 until the first success, then bisection; 9 search steps) finds, per sample,
the smallest ``c`` that still succeeds. The result is the smallest successful perturbation seen
over all steps and search rounds; samples that never succeed return the last iterate.

Defaults follow the paper and foolbox (9 search steps, c0 = 1e-3, lr 0.01, kappa 0, early abort)
except the number of Adam steps: the paper and foolbox allow 10,000 with early abort; 200 (with
early abort) is enough for small models and keeps the attack practical, and 1000 is the thorough
setting.

Differences from foolbox, both needed for "batched == per-sample": the early abort (stop when
the loss has not dropped by 0.01% over a tenth of the steps) is decided per sample (foolbox
decides on the summed batch loss), and samples that abort stop moving while the others continue.

Bounding set: C&W is a minimal-perturbation attack over the box. When a set is given (``eps`` or
``threat=``), the gradient is masked to the pixels the set lets move and every candidate is
projected onto the set; a candidate counts as adversarial (for the binary search and the best
result) only after that projection, so the attack reports success only inside the set.

Written by hand on foveal's engine because torchattacks' C&W has no binary search and ART's
round-trips through numpy.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from foveal.attacks._common import MinimalAttack, check_int, check_positive, logit_margin
from foveal.attacks.base import ATTACKS, Problem

__all__ = ["CW"]


@ATTACKS.register("cw", help="C&W-L2: tanh space, Adam, binary search over c (minimal L2)")
class CW(MinimalAttack):
    """Carlini & Wagner's L2 attack with a binary search over the constant ``c``.

    Args:
        model: classifier on [0,1] images returning logits.
        eps: optional L2 (``norm``) radius bounding the search; ``None`` (default): the box only.
        norm: norm of ``eps`` and of the reported norms (default ``"l2"``).
        kappa: confidence margin (default 0).
        steps: Adam steps per search round (default 200; the paper allows 10,000).
        lr: Adam learning rate (default 0.01).
        search_steps: binary-search rounds over ``c`` (default 9).
        initial_const: first ``c`` (default 1e-3).
        abort_early: stop a sample's round when its loss stalls (default True).
        seed: accepted for a uniform interface; C&W is deterministic.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> result = CW(model, steps=50, search_steps=3).run(x, y)
        >>> bool(((result.adversarial >= 0) & (result.adversarial <= 1)).all())
        True
    """

    name = "cw"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "l2",
        kappa: float = 0.0,
        steps: int = 200,
        lr: float = 0.01,
        search_steps: int = 9,
        initial_const: float = 1e-3,
        abort_early: bool = True,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, objective="margin", seed=seed)
        self.kappa = check_positive(kappa, "kappa", allow_zero=True)
        self.steps = check_int(steps, "steps", 1)
        self.lr = check_positive(lr, "lr")
        self.search_steps = check_int(search_steps, "search_steps", 1)
        self.initial_const = check_positive(initial_const, "initial_const")
        self.abort_early = bool(abort_early)

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        x, y, targeted = problem.images, problem.labels, problem.targeted
        bound = problem.threat
        n = x.shape[0]
        if n == 0:
            return delta
        dev, dt = x.device, x.dtype
        w0 = torch.atanh((2 * x - 1) * 0.999999)
        const = torch.full((n,), self.initial_const, device=dev, dtype=dt)
        lower = torch.zeros(n, device=dev, dtype=dt)
        upper = torch.full((n,), math.inf, device=dev, dtype=dt)
        best = torch.zeros_like(x)
        best_norm = torch.full((n,), math.inf, device=dev, dtype=dt)
        last = torch.zeros_like(x)
        check_every = max(math.ceil(self.steps / 10), 1)
        b1, b2, tiny = 0.9, 0.999, 1e-8
        for search in range(self.search_steps):
            if self.search_steps >= 10 and search == self.search_steps - 1:
                # foolbox's last round: use the smallest successful constant seen.
                const = torch.clamp(upper, max=1e10)
            w = w0.clone()
            m = torch.zeros_like(x)
            v = torch.zeros_like(x)
            found = torch.zeros(n, dtype=torch.bool, device=dev)
            active = torch.ones(n, dtype=torch.bool, device=dev)
            previous = torch.full((n,), math.inf, device=dev, dtype=dt)
            for step in range(self.steps):
                wg = w.detach().requires_grad_(True)
                with torch.enable_grad():
                    adv = (torch.tanh(wg) + 1) / 2
                    logits = problem.model(adv)
                    margin = logit_margin(logits, y, targeted)
                    hinge = (self.kappa - margin).clamp_min(0)
                    dist = (adv - x).square().flatten(1).sum(1)
                    loss = dist + const * hinge
                    (grad,) = torch.autograd.grad(loss.sum(), wg)
                grad = bound.mask_gradient(grad)
                # bookkeeping on the current point, projected onto the set
                raw = adv.detach() - x
                cand = bound.project_(raw.clone())
                margin = margin.detach()
                moved = (cand != raw).flatten(1).any(1)
                if bool(moved.any()):
                    with torch.no_grad():
                        margin = torch.where(
                            moved, logit_margin(problem.model(x + cand), y, targeted), margin
                        )
                ok = (margin > self.kappa) & active if self.kappa > 0 else (margin > 0) & active
                norm = cand.flatten(1).norm(dim=1)
                better = ok & (norm < best_norm)
                best = torch.where(better.view(-1, 1, 1, 1), cand, best)
                best_norm = torch.where(better, norm, best_norm)
                found |= ok
                last = torch.where(active.view(-1, 1, 1, 1), cand, last)
                if self.abort_early and step % check_every == 0:
                    stalled = ~(loss.detach() <= 0.9999 * previous)
                    active &= ~stalled
                    previous = torch.where(active, loss.detach(), previous)
                    if not bool(active.any()):
                        break
                # Adam on the rows still active
                t = step + 1
                m = torch.where(active.view(-1, 1, 1, 1), b1 * m + (1 - b1) * grad, m)
                v = torch.where(active.view(-1, 1, 1, 1), b2 * v + (1 - b2) * grad.square(), v)
                update = self.lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + tiny)
                w = torch.where(active.view(-1, 1, 1, 1), w - update, w)
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
        success = torch.isfinite(best_norm)
        return torch.where(success.view(-1, 1, 1, 1), best, last)
