"""SA-FGM, SAI-FGM and M-SAI-FGM (Dong et al. 2020, section 3.3, Eq. 3-5).

The perturbation lives in the superpixel subspace :class:`foveal.threats.Superpixel`: one value
per superpixel (and colour channel) of a SLIC template merged at ``beta``, zero outside the
class-activation map binarised at ``phi``. The attack optimises a noise vector ``n`` with one
entry per cell:

- ``f(n; t)`` fills ``n`` into the template (a gather on the superpixel ids) and crops it by the
  mask (:meth:`~foveal.threats.superpixel.BoundSuperpixel.fill`);
- ``Scale_eps`` rescales the result to the budget ``eps = delta * sqrt(C*H*W)`` (``delta`` in
  0-255 units as in the paper, converted here to [0,1] units: ``eps = delta / 255 * sqrt(N)``),
  then the box clips each cell value (x + delta stays in [0,1]; the perturbation stays constant
  per cell, so its norm equals ``eps`` except where the box clips);
- Eq. 4: ``n <- n + alpha * g / ||f(g)||_2`` with ``g`` the gradient of the loss with respect to
  ``n`` — obtained by autograd through the scale and the gather (a vector-Jacobian product of
  the pixel gradient), not by pooling pixel gradients. The norm is measured in pixel space, as in
  the authors' code, so that ``alpha`` (default ``eps / T``) is in the units of ``eps``;
- Eq. 5 (M-SAI-FGM): ``g_acc <- mu * g_acc + g / ||f(g)||_1``, then the step along
  ``g_acc / ||f(g_acc)||_2``.

``gradient="max"`` / ``"avg"`` replace ``g`` by the largest-magnitude / mean pixel gradient of
each cell (the ablation of Dong et al. 2020, section 4.4), for comparison. The FGM / I-FGM / MI-FGM
baselines with the same L2 budget are :class:`~foveal.attacks.FGSM`, :class:`~foveal.attacks.BIM`
and :class:`~foveal.attacks.MIM` with ``norm="l2"``.

Channels: the paper's text speaks of a vector "whose length equals the superpixel number"; the
authors' released code keeps one entry per superpixel *and channel* (a noise tensor (N, C, K)).
``channels="per-channel"`` (default) follows the code; ``channels="shared"`` follows the text.

Sets. The attack's own set (no ``threat=``) is its superpixel subspace with the L2 budget
``eps``. A call's ``threat=`` may be

- a :class:`~foveal.threats.Superpixel` set, used as is (e.g. precomputed superpixels);
- an ``L2`` / ``Linf`` ball: its budget and norm replace ``eps`` and L2 inside the attack's own
  subspace;
- a :class:`~foveal.threats.RegionBudget` with exactly one region of non-zero budget, such as
  ``frozen(mask, eps)``: the superpixel crop is restricted to that region (the attention crop
  intersected with it; a pixel with a channel-wise region mask counts only if all its channels
  belong to the region), with that region's budget and norm. The other regions never move
  (frozen pixels stay exactly unchanged).

Sets with several non-zero budgets — ``dual(mask, eps_F, eps_B)`` with eps_F, eps_B > 0, any
``RegionBudget`` with two or more regions of non-zero budget, an ``EpsMap`` — are refused
(``ValueError``): ``Scale_eps`` maps the noise vector onto *one* sphere of radius eps (Eq. 3-4),
and such a set has no single eps to scale to. (A Linf ``dual`` set with equal budgets is the
ball ``Linf(eps)``: pass that; ``dual(mask, 0, eps)`` has one non-zero budget and is accepted.)
Use the iterative attacks (``BIM``, ``PGD``) on the refused sets.

Written here: no library offers superpixel-subspace attacks. SLIC and the merge come from
scikit-image (:func:`foveal.saliency.slic_superpixels`), CAM from :mod:`foveal.saliency`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from foveal._validation import check_eps, check_images, check_mask, check_probability
from foveal.attacks.base import ATTACKS, Attack, Context, Problem, eval_mode
from foveal.attacks.objectives import ObjectiveLike
from foveal.saliency import CAM, GradCAM, binarize, slic_superpixels
from foveal.threats import L2, EpsLike, EpsMap, Linf, RegionBudget, Threat
from foveal.threats.superpixel import CHANNEL_MODES, BoundSuperpixel, Superpixel

__all__ = ["GRADIENT_MODES", "MSAIFGM", "SAFGM", "SAIFGM", "SuperpixelAttack", "sai_budget"]

#: How the gradient with respect to the noise vector is formed.
GRADIENT_MODES = ("noise", "max", "avg")

Attention = str | Callable[[torch.Tensor], torch.Tensor] | None

_TINY = 1e-30


def sai_budget(delta: float, shape: tuple[int, ...] | torch.Size) -> float:
    """Dong et al.'s (2020) L2 budget ``delta * sqrt(C*H*W)`` in [0,1] units (``delta``: 0-255).

    Example:
        >>> round(sai_budget(4, (3, 32, 32)), 4)
        0.8694
    """
    n = math.prod(int(s) for s in shape[-3:])
    return float(delta) / 255.0 * math.sqrt(n)


class SuperpixelAttack(Attack):
    """Iterative attack on the noise vector of a superpixel subspace (base of the SA* family).

    Args:
        model: classifier on [0,1] images returning logits.
        delta: per-element budget in 0-255 units; ``eps = delta / 255 * sqrt(C*H*W)`` (default
            4 when ``eps`` is not given).
        eps: absolute L2 budget instead of ``delta`` (give one of the two).
        steps: iterations T (default 10; SA-FGM 1).
        alpha: step in pixel L2 units (default ``eps / steps``).
        mu: momentum decay (0: SAI-FGM, Eq. 4; > 0: M-SAI-FGM, Eq. 5; M-SAI-FGM default 1).
        size: target superpixel side S in pixels (default 5, Dong et al.'s (2020) best).
        beta: merge threshold in 0-255 colour units (default 0: no merging).
        compactness: SLIC compactness (default 10).
        phi: binarisation factor of the attention map (default 4/12).
        attention: ``"cam"`` (default, Dong et al. 2020), ``"gradcam"``, a callable images -> maps
            (N,1,H,W), or None (no crop).
        layer: layer name for CAM / Grad-CAM (default: the last conv block).
        channels: ``"per-channel"`` (default) or ``"shared"`` noise (see the module docstring).
        gradient: ``"noise"`` (default, the gradient w.r.t. n), ``"max"`` or ``"avg"``.
        random_start: start from a random member of the set; default False: ``n_0 = 0`` so
            ``x_0 = x`` as in I-FGM (the authors' code draws random signs; on 32-pixel images a
            random start of norm ~eps leaves 10 steps of eps/10 too little room to turn).
        restarts, objective, seed: see :class:`~foveal.attacks.Attack`.

    ``None`` for ``steps``, ``mu`` or ``random_start`` takes the class default (SAI-FGM: 10, 0,
    False; SA-FGM: 1, 0, False; M-SAI-FGM: 10, 1.0, False).

    ``threat=`` in a call may be a :class:`~foveal.threats.Superpixel` set (used as is, e.g. to
    reuse precomputed superpixels), an ``L2`` / ``Linf`` ball, whose budget then replaces
    ``eps`` inside the attack's own superpixel subspace, or a region budget with exactly one
    region of non-zero budget (e.g. ``frozen(mask, eps)``), which restricts the crop to that
    region with that budget. Sets with several non-zero budgets (``dual`` with eps_F, eps_B > 0,
    ``EpsMap``) raise ``ValueError``: ``Scale_eps`` needs one radius (see the module docstring).
    """

    #: Class defaults for ``steps`` and ``mu`` (``random_start``: ``default_random_start``).
    default_steps: ClassVar[int] = 10
    default_mu: ClassVar[float] = 0.0

    def __init__(
        self,
        model: nn.Module,
        *,
        delta: float | None = None,
        eps: float | None = None,
        steps: int | None = None,
        alpha: float | None = None,
        mu: float | None = None,
        size: float = 5.0,
        beta: float = 0.0,
        compactness: float = 10.0,
        phi: float = 4 / 12,
        attention: Attention = "cam",
        layer: str | None = None,
        channels: str = "per-channel",
        gradient: str = "noise",
        random_start: bool | None = None,
        restarts: int = 1,
        objective: ObjectiveLike = "ce",
        seed: int | None = 0,
    ) -> None:
        if eps is not None and delta is not None:
            raise ValueError(
                f"give delta (0-255 units) or eps (absolute L2), not both; got delta={delta!r}, "
                f"eps={eps!r}"
            )
        super().__init__(
            model,
            eps=eps,
            norm="l2",
            objective=objective,
            random_start=random_start,
            restarts=restarts,
            seed=seed,
        )
        self.delta = (
            None if eps is not None else check_eps(4.0 if delta is None else delta, "delta")
        )
        steps = self.default_steps if steps is None else steps
        self.absolute_eps = eps is not None
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        self.steps = steps
        self.alpha = None if alpha is None else check_eps(alpha, "alpha")
        self.mu = check_eps(self.default_mu if mu is None else mu, "mu")
        if not (isinstance(size, (int, float)) and size >= 1):
            raise ValueError(f"size (superpixel side S) must be >= 1 pixel; got {size!r}")
        self.size = float(size)
        self.beta = check_eps(beta, "beta")
        if not (isinstance(compactness, (int, float)) and compactness > 0):
            raise ValueError(f"compactness must be > 0; got {compactness!r}")
        self.compactness = float(compactness)
        self.phi = check_probability(phi, "phi")
        if attention is not None and not (callable(attention) or attention in ("cam", "gradcam")):
            raise ValueError(
                f"attention must be 'cam', 'gradcam', a callable or None; got {attention!r}"
            )
        self.attention = attention
        self.layer = layer
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {CHANNEL_MODES}; got {channels!r}")
        self.channels = channels
        if gradient not in GRADIENT_MODES:
            raise ValueError(f"gradient must be one of {GRADIENT_MODES}; got {gradient!r}")
        self.gradient = gradient
        self._attention_fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    # ------------------------------------------------------------------ the subspace
    def budget_for(self, images: torch.Tensor) -> float:
        """The L2 budget for ``images``: ``eps``, or ``delta / 255 * sqrt(C*H*W)``."""
        if self.delta is None:
            return self.eps
        return sai_budget(self.delta, images.shape)

    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Attention maps (N,1,H,W) of ``images`` for their predicted class."""
        if self._attention_fn is None:
            if self.attention == "cam":
                self._attention_fn = CAM(self.model, layer=self.layer)
            elif self.attention == "gradcam":
                self._attention_fn = GradCAM(self.model, layer=self.layer)
            elif callable(self.attention):
                self._attention_fn = self.attention
        assert self._attention_fn is not None
        return self._attention_fn(images)

    def crop(self, images: torch.Tensor) -> torch.Tensor | None:
        """The binarised attention mask (N,1,H,W) at ``phi``, or None without attention."""
        if self.attention is None:
            return None
        # the engine's eval_mode restores every sub-module's own mode (mixed modes included)
        with eval_mode(self.model):
            maps = self.attention_maps(images).detach()
        return binarize(maps, self.phi)

    def superpixels(self, images: torch.Tensor) -> torch.Tensor:
        """Merged SLIC ids (N,H,W) of ``images`` (superpixel side ``size``, merge ``beta``)."""
        return slic_superpixels(
            images, size=self.size, beta=self.beta, compactness=self.compactness
        )

    def subspace(self, images: torch.Tensor, threat: Threat | None = None) -> Superpixel:
        """The :class:`~foveal.threats.Superpixel` set for ``images`` and a call's ``threat``.

        See the class docstring for the sets accepted as ``threat``.

        Raises:
            ValueError: a set with several non-zero budgets (``dual`` with two budgets, an
                ``EpsMap``), or a region mask that does not match the images.
            TypeError: any other kind of set.
        """
        x = check_images(images, "images")
        if isinstance(threat, Superpixel):
            return threat
        region: torch.Tensor | None = None
        eps: EpsLike
        if threat is None:
            eps, norm = self.budget_for(x), "l2"
        elif isinstance(threat, (L2, Linf)):
            eps, norm = threat.eps, threat.norm
        elif isinstance(threat, RegionBudget):
            name = self._single_region(threat)
            region = check_mask(threat.masks[name], x, f"masks[{name!r}]")
            eps, norm = threat.eps[name], threat.norm
        else:
            raise self._refused(threat)
        ids = self.superpixels(x)
        crop = self.crop(x)
        if region is not None:
            # a pixel is free only if every channel of it belongs to the region
            inside = region.amin(1, keepdim=True).to(device=x.device, dtype=x.dtype)
            crop = inside if crop is None else crop * inside
        return Superpixel(ids, eps, norm=norm, mask=crop, channels=self.channels)

    def _single_region(self, threat: RegionBudget) -> str:
        """The one region of ``threat`` with a non-zero budget (the first if none has one)."""

        def live(eps: float | torch.Tensor) -> bool:
            return bool((eps > 0).any()) if isinstance(eps, torch.Tensor) else eps > 0

        regions = [name for name, eps in threat.eps.items() if live(eps)]
        if len(regions) > 1:
            raise self._refused(threat, regions)
        return regions[0] if regions else next(iter(threat.eps))

    def _refused(self, threat: Threat, regions: list[str] | None = None) -> Exception:
        accepted = (
            "accepted: a Superpixel set, an L2 / Linf ball, or a RegionBudget with exactly one "
            "region of non-zero budget such as frozen(mask, eps) (the crop is restricted to "
            "that region)"
        )
        name = type(self).__name__
        if regions is not None or isinstance(threat, EpsMap):
            what = (
                f"regions {regions} have non-zero budgets"
                if regions is not None
                else "a per-pixel budget has many radii"
            )
            return ValueError(
                f"{name} cannot attack on {threat!r}: {what}, but Scale_eps scales the noise "
                "vector onto one sphere of radius eps (Dong et al. 2020, Eq. 3-4), so a set with "
                f"several non-zero budgets has no single eps to scale to; {accepted}"
            )
        return TypeError(
            f"threat must be a Superpixel set, an L2 / Linf ball or a single-budget region set "
            f"for {name}; got {type(threat).__name__} ({accepted})"
        )

    def threat_for(self, images: torch.Tensor, context: Context, threat: Threat | None) -> Threat:
        """The superpixel subspace of ``images``, adapted to the call's ``threat`` (if any)."""
        return self.subspace(images, threat)

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.delta is not None:
            out.pop("eps", None)
        return out

    # ------------------------------------------------------------------ algorithm
    @staticmethod
    def scaled(bound: BoundSuperpixel, noise: torch.Tensor) -> torch.Tensor:
        """``Scale_eps`` of the noise (cell values), clipped to the box: cell values of delta.

        Scales ``fill(noise)`` onto the sphere of radius eps of the set's norm; zero noise maps
        to zero (with the Jacobian of the unscaled map there, which one-step SA-FGM needs).
        """
        n = noise.shape[0]
        return bound.clip(noise * SuperpixelAttack._scale(bound, noise).view(n, 1, 1))

    @staticmethod
    def _scale(bound: BoundSuperpixel, noise: torch.Tensor) -> torch.Tensor:
        """(N,) factor of ``Scale_eps`` (1 for zero noise)."""
        if bound.norm == "l2":
            size2 = (bound.counts * noise.square()).flatten(1).sum(1)
            live = size2 > 0
            safe = torch.where(live, size2, torch.ones_like(size2))
            return torch.where(live, bound.eps * safe.rsqrt(), torch.ones_like(size2))
        size = torch.where(bound.counts > 0, noise.abs(), 0.0).flatten(1).amax(1)
        live = size > 0
        safe = torch.where(live, size, torch.ones_like(size))
        return torch.where(live, bound.eps / safe, torch.ones_like(size))

    def _noise_gradient(
        self, bound: BoundSuperpixel, noise: torch.Tensor, pixel_grad: torch.Tensor
    ) -> torch.Tensor:
        if self.gradient == "avg":
            return bound.coefficients(pixel_grad)
        if self.gradient == "max":
            masked = pixel_grad * bound.mask
            hi = bound.cell_maxima(masked)
            lo = -bound.cell_maxima(-masked)
            return torch.where(hi >= -lo, hi, lo)
        leaf = noise.detach().requires_grad_(True)
        with torch.enable_grad():
            d = bound.fill(self.scaled(bound, leaf))
            (g,) = torch.autograd.grad(d, leaf, grad_outputs=pixel_grad)
            # The gradient of the plain fill (no Scale_eps, no box): what g would be if the
            # scaling and the box let every direction through.
            (plain,) = torch.autograd.grad(bound.fill(leaf), leaf, grad_outputs=pixel_grad)
        # Where the scaling and the box cancel the gradient (every cell on a bound, or the
        # gradient along the noise itself), g is zero up to rounding; normalised, that rounding
        # would become a full step in a direction that depends on the batch's rounding. Such a
        # gradient is zero.
        n = g.shape[0]
        size = (bound.counts * g.square()).flatten(1).sum(1).sqrt()
        ref = (bound.counts * plain.square()).flatten(1).sum(1).sqrt() * self._scale(bound, noise)
        tol = torch.finfo(g.dtype).eps ** 0.5
        return torch.where((size <= tol * ref).view(n, 1, 1), torch.zeros_like(g), g)

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        bound = problem.threat
        if not isinstance(bound, BoundSuperpixel):
            raise TypeError(
                f"{type(self).__name__} needs a Superpixel set; got {type(bound).__name__}"
            )
        n = delta.shape[0]
        noise = bound.coefficients(delta)
        alpha = (
            bound.eps / self.steps if self.alpha is None else torch.full_like(bound.eps, self.alpha)
        )
        alpha = alpha.view(n, 1, 1)
        momentum = torch.zeros_like(noise)

        def pixel_norm(g: torch.Tensor, p: float) -> torch.Tensor:
            if p == 2:
                value = (bound.counts * g.square()).flatten(1).sum(1).sqrt()
            else:
                value = (bound.counts * g.abs()).flatten(1).sum(1)
            return value.clamp_min(_TINY).view(n, 1, 1)

        for _ in range(self.steps):
            d = bound.fill(self.scaled(bound, noise))
            pixel_grad, _ = problem.gradient(d)
            g = self._noise_gradient(bound, noise, pixel_grad)
            if self.mu > 0:
                momentum = self.mu * momentum + g / pixel_norm(g, 1)
                g = momentum
            noise = noise + alpha * g / pixel_norm(g, 2)
        return bound.fill(self.scaled(bound, noise))


@ATTACKS.register("sai-fgm", help="SAI-FGM: iterative superpixel-guided attentional L2 attack")
class SAIFGM(SuperpixelAttack):
    """SAI-FGM (Dong et al. 2020, Eq. 3-4): T steps on the superpixel noise vector, L2 budget.

    See :class:`SuperpixelAttack` for the arguments (defaults: delta 4, T = 10,
    alpha = eps / T, S = 5, phi = 4/12, CAM attention, zero start). S = 5 suits the paper's
    299-pixel images (about 3,500 superpixels); on 32-pixel images it leaves ~40 superpixels,
    which limits the attack (choose S in proportion to the image side, e.g. 1-2 on 32 pixels).

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import foveal
        >>> model = foveal.models.create("shapes-cnn", width=4)
        >>> x = foveal.data.load("shapes", split="test", n=2, size=16).images
        >>> x_adv = SAIFGM(model, delta=4, steps=3)(x, torch.tensor([0, 1]))
        >>> d = (x_adv - x).flatten(1).norm(dim=1)
        >>> bool((d <= sai_budget(4, x.shape) + 1e-5).all())
        True
    """

    name = "sai-fgm"


@ATTACKS.register("sa-fgm", help="SA-FGM: one-step superpixel-guided attentional L2 attack")
class SAFGM(SuperpixelAttack):
    """SA-FGM: one step of size eps from zero in the superpixel subspace (the FGM analogue).

    Arguments as :class:`SuperpixelAttack`, with default ``steps=1`` (so ``alpha = eps``).
    """

    name = "sa-fgm"
    default_steps = 1


@ATTACKS.register("m-sai-fgm", help="M-SAI-FGM: SAI-FGM with momentum (Eq. 5)")
class MSAIFGM(SuperpixelAttack):
    """M-SAI-FGM (Eq. 5): SAI-FGM whose update follows an L1-normalised gradient momentum.

    Arguments as :class:`SuperpixelAttack`, with default ``mu=1.0``.
    """

    name = "m-sai-fgm"
    default_mu = 1.0
