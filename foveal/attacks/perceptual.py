"""Adversarial perturbations on the perceptual ball (Elliott et al. 2019, Eq. 1-4) by L-BFGS.

Per image, minimise

``(M(x') - T)^2 + lam_perceptual * sum_l mean (C_l(x') - C_l(x))^2 + lam_l2 * mean (x' - x)^2``

with ``M(x') = z_y(x') - max_{j != y} z_j(x')`` the logit margin of the true class (Eq. 1; for a
targeted attack the margin of the target, aimed at ``-T``), ``C_l`` the activations of the
chosen layers (hooked by name) and ``x'`` inside the perturbation set (default the Linf box
8/255 intersected with [0,1], Elliott et al.'s (2019) detection setting). The squared differences
are averaged over elements, as in the authors' code, so the weights do not depend on the image or
layer size. Defaults follow the authors' example (``T = -2``) and the detection experiment
(20 iterations, best iterate over all function evaluations returned).

The optimiser is written here rather than taken from ``torch.optim.LBFGS`` because that one
treats the batch as one vector: its two-loop recursion, curvature pairs and line search couple
the images, so an image's result would depend on the rest of the batch (and the authors' code
assumes one image). Here every dot product, curvature pair, initial scaling and Armijo
backtracking step is per sample; the loss is a sum of per-sample losses (eval-mode model), so
its gradient separates, and the batched result equals the per-sample one. Each iterate is
projected onto the set (the authors "clip the solution found at each iteration"; their upper
clamp copies the lower bound, a bug not repeated here), so every evaluated point is feasible and
the returned best one is inside the set by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from foveal._validation import check_eps, check_images, check_labels
from foveal.attacks.base import ATTACKS, Attack, Problem, eval_mode
from foveal.attacks.objectives import ObjectiveLike
from foveal.saliency import resolve_layer

__all__ = ["PerceptualBall", "perceptual_layers"]

_TINY = 1e-30


def perceptual_layers(
    model: nn.Module, layers: Sequence[str] | None = None, arch: str | None = None
) -> list[nn.Module]:
    """The modules whose activations the perceptual term compares.

    Args:
        model: the classifier (names are resolved as :func:`foveal.models.get_layer` does,
            relative to the model or to the architecture inside ``Normalized``).
        layers: dotted names; default ``[foveal.models.default_layer(arch)]`` when ``arch`` is
            given, else the last top-level block with a convolution
            (:func:`foveal.saliency.find_last_conv_block`).
        arch: registered architecture name, for its default layer.
    """
    if layers is None:
        return [resolve_layer(model, None, arch)]
    if isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise ValueError("layers must name at least one layer (or be None for the default)")
    return [resolve_layer(model, name) for name in layers]


def _remove(handles: list[Any]) -> None:
    for handle in handles:
        handle.remove()


@ATTACKS.register("perceptual", help="perceptual-ball attack: margin + feature + L2 loss, L-BFGS")
class PerceptualBall(Attack):
    """Perceptual-ball attack (Elliott et al. 2019): per-sample projected L-BFGS on Eq. 4.

    Args:
        model: classifier on [0,1] images returning logits.
        eps: radius of the default set (default 8/255, Linf).
        norm: ``"linf"`` (default) or ``"l2"``; any set passes through ``threat=``.
        steps: L-BFGS iterations (default 20).
        layers: layer names for the perceptual term (default: see :func:`perceptual_layers`).
        arch: architecture name for the default layer.
        lam_perceptual: weight lambda' of the perceptual term (default 1.0).
        lam_l2: weight lambda of the L2 term (default 1.0, the authors' ``scalar``).
        target_margin: T, the margin ``M`` aimed at (default -2.0: misclassified by a margin
            of 2 logits, the authors' example); targeted attacks aim at ``M_target = -T``.
        history: L-BFGS memory (default 10).
        max_backtracks: Armijo halvings per iteration (default 6); a sample with no
            acceptable step keeps its iterate.
        random_start: start from a random point of the set (default False: from x).
        restarts, seed: see :class:`~foveal.attacks.Attack`.
        objective: what :meth:`run` reports as ``loss`` and restarts compare (default
            ``"margin"``); the optimiser always minimises Eq. 4 (see :meth:`loss`).

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import foveal
        >>> model = foveal.models.create("shapes-cnn", width=4)
        >>> x = foveal.data.load("shapes", split="test", n=2, size=16).images
        >>> x_adv = PerceptualBall(model, steps=3)(x, torch.tensor([0, 1]))
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """

    name = "perceptual"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = 8 / 255,
        norm: str = "linf",
        steps: int = 20,
        layers: Sequence[str] | None = None,
        arch: str | None = None,
        lam_perceptual: float = 1.0,
        lam_l2: float = 1.0,
        target_margin: float = -2.0,
        history: int = 10,
        max_backtracks: int = 6,
        random_start: bool = False,
        restarts: int = 1,
        objective: ObjectiveLike = "margin",
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            objective=objective,
            random_start=random_start,
            restarts=restarts,
            seed=seed,
        )
        for name, value in (("steps", steps), ("history", history)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if (
            isinstance(max_backtracks, bool)
            or not isinstance(max_backtracks, int)
            or (max_backtracks < 0)
        ):
            raise ValueError(f"max_backtracks must be an integer >= 0; got {max_backtracks!r}")
        self.steps = steps
        self.history = history
        self.max_backtracks = max_backtracks
        self.lam_perceptual = check_eps(lam_perceptual, "lam_perceptual")
        self.lam_l2 = check_eps(lam_l2, "lam_l2")
        margin = float(target_margin)
        if not math.isfinite(margin):
            raise ValueError(f"target_margin must be finite; got {target_margin!r}")
        self.target_margin = margin
        self.layer_names = (
            None if layers is None else [layers] if isinstance(layers, str) else list(layers)
        )
        self._layers = perceptual_layers(model, self.layer_names, arch)

    # ------------------------------------------------------------------ the loss
    def _loss_fn(
        self, images: torch.Tensor, labels: torch.Tensor, targeted: bool
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[Any]]:
        """Per-sample Eq. 4 as a function of delta, and the hook handles to remove afterwards."""
        store: list[torch.Tensor] = []

        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            store.append(out)

        handles = [layer.register_forward_hook(hook) for layer in self._layers]
        try:
            with torch.no_grad():
                self.model(images)
        except BaseException:
            _remove(handles)
            raise
        reference = [r.detach() for r in store]
        store.clear()
        aim = -self.target_margin if targeted else self.target_margin

        def loss(delta: torch.Tensor) -> torch.Tensor:
            store.clear()
            logits = self.model(images + delta)
            own = logits.gather(1, labels[:, None]).squeeze(1)
            others = logits.scatter(1, labels[:, None], -math.inf).amax(1)
            value = (own - others - aim).square()
            if self.lam_perceptual:
                for feat, ref in zip(store, reference, strict=True):
                    value = value + self.lam_perceptual * (feat - ref).square().flatten(1).mean(1)
            if self.lam_l2:
                value = value + self.lam_l2 * delta.square().flatten(1).mean(1)
            return value

        return loss, handles

    def loss(
        self,
        images: torch.Tensor,
        adversarial: torch.Tensor,
        labels: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Eq. 4 per sample (N,) at ``adversarial`` (the quantity the optimiser minimises)."""
        x = check_images(images, "images")
        adv = check_images(adversarial, "adversarial")
        y = check_labels(labels if target is None else target, x.shape[0], name="labels")
        with eval_mode(self.model), torch.no_grad():
            fn, handles = self._loss_fn(x, y.to(x.device), target is not None)
            try:
                return fn(adv - x)
            finally:
                _remove(handles)

    # ------------------------------------------------------------------ L-BFGS
    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        fn, handles = self._loss_fn(problem.images, problem.labels, problem.targeted)
        try:
            return self._lbfgs(fn, problem, delta)
        finally:
            _remove(handles)

    def _lbfgs(
        self, fn: Callable[[torch.Tensor], torch.Tensor], problem: Problem, delta: torch.Tensor
    ) -> torch.Tensor:
        threat = problem.threat
        n = delta.shape[0]

        def evaluate(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            leaf = d.detach().requires_grad_(True)
            with torch.enable_grad():
                value = fn(leaf)
                (grad,) = torch.autograd.grad(value.sum(), leaf)
            return value.detach(), grad.flatten(1)

        def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * b).sum(1)

        d = threat.project_(delta.detach().clone())
        f, g = evaluate(d)
        best, best_f = d.clone(), f.clone()
        # First step: move at most the largest budget in any coordinate.
        reach = threat.budget.expand_as(d).flatten(1).amax(1)
        gamma = reach / g.abs().amax(1).clamp_min(_TINY)
        s_hist: list[torch.Tensor] = []
        y_hist: list[torch.Tensor] = []
        rho_hist: list[torch.Tensor] = []
        shape = d.shape
        for _ in range(self.steps):
            q = g.clone()
            alphas = []
            for s, y, rho in zip(
                reversed(s_hist), reversed(y_hist), reversed(rho_hist), strict=True
            ):
                a = rho * dot(s, q)
                q = q - a[:, None] * y
                alphas.append(a)
            r = gamma[:, None] * q
            for (s, y, rho), a in zip(
                zip(s_hist, y_hist, rho_hist, strict=True), reversed(alphas), strict=True
            ):
                b = rho * dot(y, r)
                r = r + s * (a - b)[:, None]
            p = -r
            descent = dot(g, p) < 0
            p = torch.where(descent[:, None], p, -gamma[:, None] * g)
            t = torch.ones(n, device=d.device, dtype=d.dtype)
            accepted = torch.zeros(n, device=d.device, dtype=torch.bool)
            new_d, new_f, new_g = d.clone(), f.clone(), g.clone()
            for _ in range(self.max_backtracks + 1):
                cand = threat.project_((d.flatten(1) + t[:, None] * p).view(shape))
                fc, gc = evaluate(cand)
                improved = fc < best_f
                best = torch.where(improved.view(n, 1, 1, 1), cand, best)
                best_f = torch.where(improved, fc, best_f)
                step = (cand - d).flatten(1)
                ok = ~accepted & (fc <= f + 1e-4 * dot(g, step)) & torch.isfinite(fc)
                new_d = torch.where(ok.view(n, 1, 1, 1), cand, new_d)
                new_f = torch.where(ok, fc, new_f)
                new_g = torch.where(ok[:, None], gc, new_g)
                accepted = accepted | ok
                if bool(accepted.all()):
                    break
                t = torch.where(accepted, t, 0.5 * t)
            s = (new_d - d).flatten(1)
            y = new_g - g
            sy = dot(s, y)
            valid = sy > 1e-10 * dot(y, y).clamp_min(_TINY).sqrt() * dot(s, s).sqrt()
            rho = torch.where(valid, 1.0 / torch.where(valid, sy, 1.0), 0.0)
            gamma = torch.where(valid, sy / dot(y, y).clamp_min(_TINY), gamma)
            s_hist.append(s)
            y_hist.append(y)
            rho_hist.append(rho)
            if len(s_hist) > self.history:
                s_hist.pop(0)
                y_hist.pop(0)
                rho_hist.pop(0)
            d, f, g = new_d, new_f, new_g
        return best
