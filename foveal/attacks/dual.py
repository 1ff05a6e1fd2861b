"""Dual-perturbation attack (Tong et al. 2020, Eq. 3, Appendix A; EOT variant Eq. 9).

``max CE(h(x + delta), y) + lambda * S(x + delta)`` over the dual set
``{||delta o F||_p <= eps_F, ||delta o B||_p <= eps_B}`` intersected with the box, where ``F`` /
``B`` are the foreground / background masks and ``S`` the foreground score: the fixation density
mass inside ``F`` (a large ``lambda`` keeps the background from becoming salient).

Nothing here is a new optimiser. Appendix A's split / update / merge is what PGD already does on
the region-budget set :func:`foveal.threats.dual`: the set's ``ascent`` normalises the gradient
per region after masking it (``G(F o grad)``, ``G(B o grad)``), the step is per region
(``alpha_F``, ``alpha_B``), and the projection separates over the regions. What this module adds:

- :class:`SalienceTerm`, the objective term ``S(x + delta)`` through a differentiable fixation
  model (the spectral residual of :func:`foveal.saliency.spectral_residual` by default; any
  callable images -> density plugs in);
- :class:`ExpectationOverNoise`, Eq. 9's expectation over Gaussian noise for randomised
  classifiers (the noise enters the objective only, never the returned images);
- :class:`DualPerturbation`, PGD on the dual set with the objective ``CE + lambda * S``, the
  masks taken from a masker on the fixation map (the half-range threshold of Tong et al. 2020 by
  default) or from ground-truth masks passed per call (``masks=``), and absolute per-region
  step sizes ``alpha_fg`` / ``alpha_bg``. It is PGD plus the engine's per-call hooks:
  ``prepare`` derives the foreground of the batch (into the call's context), ``threat_for``
  builds ``dual(foreground, eps_F, eps_B)`` and ``objective_for`` the objective
  ``CE + lambda * S(foreground)`` (averaged over noise under EOT); the step size reads the
  foreground from ``problem.context``.

With ``eps_fg == eps_bg`` and ``lam == 0`` (Linf) the attack is exactly PGD with the same seed.
For L2 the dual set is two balls (one per region) and thus larger than one ball of that radius.

Written here because no library offers the salience term, per-region budgets or per-call masks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from foveal._validation import check_eps, check_images, check_mask
from foveal.attacks.base import ATTACKS, Context, Problem, _image_keys, sample_generators
from foveal.attacks.objectives import Objective, ObjectiveContext, ObjectiveLike, as_objective
from foveal.attacks.pgd import PGD
from foveal.saliency import foreground_score, half_range, spectral_residual
from foveal.threats import GeneratorLike, Threat, draw, dual

__all__ = ["MASK_SOURCES", "DualPerturbation", "ExpectationOverNoise", "SalienceTerm"]

#: Where :class:`DualPerturbation` takes its foreground masks from.
MASK_SOURCES = ("fixation", "ground-truth")

Density = Callable[[torch.Tensor], torch.Tensor]
MaskFn = Callable[[torch.Tensor], torch.Tensor]


def _check_density(density: Density | None) -> Density:
    if density is None:
        return spectral_residual
    if not callable(density):
        raise TypeError(f"density must be callable images -> (N,1,H,W); got {type(density)}")
    if getattr(density, "differentiable", True) is False:
        raise ValueError(
            f"density must be differentiable for the salience term; got {density!r} with "
            "differentiable=False (build it with differentiable=True)"
        )
    return density


class SalienceTerm(Objective):
    """Foreground score ``S(x + delta)``: fixation density mass inside the foreground (N,).

    Args:
        foreground: (N,1,H,W) or (N,C,H,W) {0,1} masks of the batch being attacked.
        density: callable images (N,C,H,W) -> non-negative maps (N,1,H,W), differentiable;
            default the spectral-residual density (:func:`foveal.saliency.spectral_residual`).
            It receives ``x + delta`` (plus noise under :class:`ExpectationOverNoise`, which may
            leave [0,1]), so pass a plain callable rather than a validating saliency method when
            combining it with EOT.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> fg = torch.zeros(2, 1, 16, 16); fg[..., 4:12, 4:12] = 1
        >>> ctx = ObjectiveContext(nn.Identity(), x, x * 0, x, torch.zeros(2, 3), torch.zeros(
        ...     2, dtype=torch.long), False)
        >>> SalienceTerm(fg)(ctx).shape
        torch.Size([2])
    """

    def __init__(self, foreground: torch.Tensor, *, density: Density | None = None) -> None:
        if not isinstance(foreground, torch.Tensor):
            raise TypeError(f"foreground must be a torch.Tensor; got {type(foreground).__name__}")
        if foreground.ndim != 4:
            raise ValueError(
                f"foreground must have shape (N,1|C,H,W); got {tuple(foreground.shape)}"
            )
        if bool(((foreground != 0) & (foreground != 1)).any()):
            raise ValueError("foreground must be binary (0/1)")
        self.foreground = foreground
        # Checked once here rather than at every step: a pixel is foreground if any channel is.
        self._fg = foreground.amax(dim=1, keepdim=True)
        self.density = _check_density(density)

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        density = self.density(ctx.adversarial)
        if self._fg.shape[0] != density.shape[0]:  # e.g. the draws of ExpectationOverNoise
            return foreground_score(density, self.foreground).to(ctx.adversarial.dtype)
        fg = self._fg.to(device=density.device, dtype=density.dtype)
        total = density.sum(dim=(1, 2, 3)).clamp_min(1e-30)
        return ((density * fg).sum(dim=(1, 2, 3)) / total).to(ctx.adversarial.dtype)

    def __repr__(self) -> str:
        return "SalienceTerm()"


class ExpectationOverNoise(Objective):
    """``E_eta[term(x + delta + eta)]``, eta ~ N(0, sigma^2 I), by ``samples`` draws (Eq. 9).

    Each evaluation draws fresh noise, runs the model on ``x + delta + eta`` and averages the
    term over the draws; the noise never enters the perturbation. With one generator per sample
    the draws of sample ``i`` come from its own generator only.

    Args:
        term: the objective to average (e.g. ``CrossEntropy() + lam * SalienceTerm(...)``).
        sigma: noise standard deviation in [0,1] pixel units (> 0).
        samples: draws per evaluation (>= 1).
        generator: one ``torch.Generator``, one per sample, or None (torch's global one).
    """

    def __init__(
        self,
        term: ObjectiveLike,
        *,
        sigma: float = 0.25,
        samples: int = 8,
        generator: GeneratorLike = None,
    ) -> None:
        self.term = as_objective(term)
        if not (check_eps(sigma, "eot_sigma") > 0):
            raise ValueError(f"eot_sigma must be > 0; got {sigma!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"eot_samples must be an integer >= 1; got {samples!r}")
        self.sigma = float(sigma)
        self.samples = samples
        self.generator = generator

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        adv = ctx.adversarial
        total = torch.zeros(adv.shape[0], device=adv.device, dtype=adv.dtype)
        for _ in range(self.samples):
            eta = draw("normal", adv.shape, self.generator, device=adv.device, dtype=adv.dtype)
            noisy = adv + self.sigma * eta
            noisy_ctx = replace(ctx, adversarial=noisy, logits=ctx.model(noisy))
            total = total + self.term(noisy_ctx)
        return total / self.samples

    def __repr__(self) -> str:
        return f"ExpectationOverNoise({self.term!r}, sigma={self.sigma:g}, samples={self.samples})"


@ATTACKS.register("dual", help="dual-perturbation PGD: eps_F / eps_B + lambda * foreground score")
class DualPerturbation(PGD):
    """Dual-perturbation attack of Tong et al. 2020 (Linf or L2), with the salience term and EOT.

    Args:
        model: classifier on [0,1] images returning logits.
        eps_fg: foreground budget eps_F (default 4/255).
        eps_bg: background budget eps_B (default 20/255).
        norm: ``"linf"`` (default) or ``"l2"``.
        lam: weight lambda of the foreground score (default 1.0, Tong et al.'s (2020) Linf setting;
            0 removes the term).
        steps: iterations (default 10).
        alpha_fg, alpha_bg: absolute step sizes per region (give both or neither); default
            ``rel_alpha`` times each region's budget.
        rel_alpha: step relative to each region's budget (default 2.5 / steps, as PGD).
        random_start: uniform start inside each region's ball (default True, as PGD).
        restarts: runs per sample; the best is kept.
        objective: the classification term (default ``"ce"``).
        density: fixation model, callable images -> (N,1,H,W) density, differentiable; used
            for the masks and for the salience term (default: spectral residual).
        masker: maps (N,1,H,W) -> {0,1} masks (default :func:`foveal.saliency.half_range`).
        mask_source: ``"fixation"`` (masker on the density of the clean image, unless a call
            passes ``masks=``) or ``"ground-truth"`` (every call must pass ``masks=``).
        eot_samples: 0 (default, no EOT) or the number of noise draws of Eq. 9.
        eot_sigma: noise standard deviation for EOT (default 0.25).
        seed: random-start and EOT seed.
        projection: ``"rescale"`` (rescale, then clip, as torchattacks; default) or ``"exact"``
            (Euclidean projection after each step); see :mod:`foveal.attacks.iterative`.

    A call's ``threat=`` replaces the dual set (the salience term and the step sizes still use
    the foreground).

    Shape:
        images (N,C,H,W) in [0,1], labels (N,), optional masks (N,1,H,W) -> (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
        >>> x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
        >>> fg = torch.zeros(2, 1, 16, 16); fg[..., 4:12, 4:12] = 1
        >>> attack = DualPerturbation(model, eps_fg=2 / 255, eps_bg=16 / 255, steps=3)
        >>> result = attack.run(x, y, masks=fg)
        >>> float(result.norms["foreground"].max()) <= 2 / 255 + 1e-6
        True
    """

    name = "dual"
    uses_masks = True

    def __init__(
        self,
        model: nn.Module,
        *,
        eps_fg: float = 4 / 255,
        eps_bg: float = 20 / 255,
        norm: str = "linf",
        lam: float = 1.0,
        steps: int = 10,
        alpha_fg: float | None = None,
        alpha_bg: float | None = None,
        rel_alpha: float | None = None,
        random_start: bool | None = None,
        restarts: int = 1,
        objective: ObjectiveLike = "ce",
        density: Density | None = None,
        masker: MaskFn | None = None,
        mask_source: str = "fixation",
        eot_samples: int = 0,
        eot_sigma: float = 0.25,
        seed: int | None = 0,
        projection: str = "rescale",
    ) -> None:
        if (alpha_fg is None) != (alpha_bg is None):
            raise ValueError(
                f"give both alpha_fg and alpha_bg or neither; got alpha_fg={alpha_fg!r}, "
                f"alpha_bg={alpha_bg!r}"
            )
        if alpha_fg is not None and rel_alpha is not None:
            raise ValueError(
                f"give alpha_fg/alpha_bg (absolute) or rel_alpha, not both; got "
                f"alpha_fg={alpha_fg!r}, rel_alpha={rel_alpha!r}"
            )
        self.eps_fg = check_eps(eps_fg, "eps_fg")
        self.eps_bg = check_eps(eps_bg, "eps_bg")
        super().__init__(
            model,
            eps=max(self.eps_fg, self.eps_bg),
            norm=norm,
            steps=steps,
            rel_alpha=rel_alpha,
            random_start=random_start,
            restarts=restarts,
            objective=objective,
            seed=seed,
            projection=projection,
        )
        lam_value = float(lam)
        if not math.isfinite(lam_value):
            raise ValueError(f"lam must be a finite number; got {lam!r}")
        self.lam = lam_value
        self.alpha_fg = None if alpha_fg is None else check_eps(alpha_fg, "alpha_fg")
        self.alpha_bg = None if alpha_bg is None else check_eps(alpha_bg, "alpha_bg")
        if mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source must be one of {MASK_SOURCES}; got {mask_source!r}")
        self.mask_source = mask_source
        self.density = _check_density(density)
        if masker is not None and not callable(masker):
            raise TypeError(f"masker must be callable maps -> masks; got {type(masker).__name__}")
        self.masker = masker
        if isinstance(eot_samples, bool) or not isinstance(eot_samples, int) or eot_samples < 0:
            raise ValueError(f"eot_samples must be an integer >= 0; got {eot_samples!r}")
        self.eot_samples = eot_samples
        self.eot_sigma = check_eps(eot_sigma, "eot_sigma")
        if eot_samples and not self.eot_sigma > 0:
            raise ValueError(f"eot_sigma must be > 0 with eot_samples > 0; got {eot_sigma!r}")

    @property
    def requires_masks(self) -> bool:
        """True with ``mask_source="ground-truth"``: every call must pass ``masks=``."""
        return self.mask_source == "ground-truth"

    # ------------------------------------------------------------------ masks
    def foreground(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Foreground masks (N,1,H,W) of ``images``: ``masks`` if given, else the masker's.

        Raises:
            ValueError: ``mask_source="ground-truth"`` and no ``masks`` were given, or masks of
                the wrong shape / not binary.
        """
        x = check_images(images, "images")
        return self._foreground(x, None if masks is None else check_mask(masks, x, "masks"))

    def _foreground(self, x: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """:meth:`foreground` of checked images and checked masks (or None)."""
        if masks is not None:
            return masks.amax(1, keepdim=True).to(device=x.device, dtype=x.dtype)
        if self.mask_source == "ground-truth":
            raise self._missing_masks()
        with torch.no_grad():
            maps = self.density(x.detach())
            if self.masker is None:
                fg = half_range(maps)
            else:
                fg = self.masker(maps)
                fg = getattr(fg, "foreground", fg)  # a Masker returns Regions
        if not isinstance(fg, torch.Tensor):
            raise TypeError(f"masker must return a tensor or Regions; got {type(fg).__name__}")
        return check_mask(fg, x, "masker output").to(device=x.device, dtype=x.dtype)

    def _missing_masks(self) -> ValueError:
        return ValueError(
            "mask_source='ground-truth' needs ground-truth masks passed as masks= (the data "
            "has none here; got masks=None); use mask_source='fixation' for data without masks"
        )

    def _context_foreground(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        """The foreground :meth:`prepare` put into ``context`` (derived if it is absent, as in
        a problem built by hand)."""
        return self._foreground(images, context.masks)

    # ------------------------------------------------------------------ per-call hooks
    def prepare(self, images: torch.Tensor, context: Context) -> Context:
        """The batch's foreground (given masks, else the masker's) as ``context.masks``."""
        return replace(context, masks=self._foreground(images, context.masks))

    def threat_for(self, images: torch.Tensor, context: Context, threat: Threat | None) -> Threat:
        """``dual(foreground, eps_fg, eps_bg, norm)`` unless the call gives a set."""
        if threat is not None:
            return threat
        return dual(self._context_foreground(images, context), self.eps_fg, self.eps_bg, self.norm)

    def objective_for(self, images: torch.Tensor, context: Context) -> Objective:
        """``objective + lam * SalienceTerm(foreground)``, averaged over noise under EOT."""
        objective: Objective = self.objective
        if self.lam != 0:
            fg = self._context_foreground(images, context)
            objective = objective + self.lam * SalienceTerm(fg, density=self.density)
        if self.eot_samples:
            seed = 0 if self.seed is None else self.seed
            gens = sample_generators(_image_keys(images), seed, -1)
            objective = ExpectationOverNoise(
                objective, sigma=self.eot_sigma, samples=self.eot_samples, generator=gens
            )
        return objective

    def config(self) -> dict[str, Any]:
        out = super().config()
        out.pop("eps", None)
        return out

    # ------------------------------------------------------------------ algorithm
    def step_size(self, problem: Problem) -> torch.Tensor:
        """``alpha_fg`` on the foreground and ``alpha_bg`` elsewhere when given."""
        if self.alpha_fg is None or self.alpha_bg is None:
            return super().step_size(problem)
        fg = self._context_foreground(problem.images, problem.context)
        return self.alpha_fg * fg + self.alpha_bg * (1 - fg)
