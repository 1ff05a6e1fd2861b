"""Saliency sources that are not explanations of a classifier's gradient.

- :class:`GroundTruth` — dataset foreground masks used as saliency maps: the "human" masks
  of SIP-H (Redgrave & Czajka 2024) and the oracle of every localisation benchmark.
- :class:`PerturbationMagnitude` — the per-pixel magnitude of an adversarial perturbation
  ``x_adv - x`` (Elliott et al. 2019: the perturbation of a successful attack concentrates on the
  object). Takes a ready ``x_adv`` or any callable ``attack(x, y) -> x_adv`` (e.g. an attack of
  :mod:`foveal.attacks`, which sits above this package and is never imported here).
- :class:`CenterBaseline` — a centred Gaussian blob that ignores the image: the baseline that
  any localising method must beat on object-centred data.

All three are written here: they are tensor bookkeeping that no saliency library provides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from foveal._validation import check_images, check_mask
from foveal.saliency.base import METHODS, SaliencyMethod, resolve_target
from foveal.saliency.fixation import gaussian_blur

__all__ = ["CenterBaseline", "GroundTruth", "PerturbationMagnitude", "perturbation_magnitude"]

_MAGNITUDES = ("rms", "l2", "l1", "max")


def perturbation_magnitude(
    images: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    reduce: str = "rms",
    blur_sigma: float = 0.0,
) -> torch.Tensor:
    """Per-pixel magnitude of ``x_adv - images``, reduced over channels.

    Args:
        images: clean images (N,C,H,W) in [0,1].
        x_adv: perturbed images, same shape, in [0,1].
        reduce: ``"rms"`` (``sqrt(mean_c d^2)``, the perceptual-ball code's choice, default),
            ``"l2"`` (``sqrt(sum_c d^2)``), ``"l1"`` (``sum_c |d|``) or ``"max"``.
        blur_sigma: optional Gaussian blur in pixels (the perceptual-ball code uses 2); 0 = none.

    Returns:
        (N,1,H,W) non-negative maps (differentiable with respect to both inputs).

    Example:
        >>> x = torch.zeros(1, 3, 2, 2)
        >>> perturbation_magnitude(x, x + 0.1).flatten()
        tensor([0.1000, 0.1000, 0.1000, 0.1000])
    """
    check_images(images)
    check_images(x_adv, "x_adv")
    if x_adv.shape != images.shape:
        raise ValueError(
            f"x_adv must have the shape of images {tuple(images.shape)}; got {tuple(x_adv.shape)}"
        )
    if reduce not in _MAGNITUDES:
        raise ValueError(f"reduce must be one of {_MAGNITUDES}; got {reduce!r}")
    if blur_sigma < 0:
        raise ValueError(f"blur_sigma must be >= 0; got {blur_sigma}")
    d = x_adv.to(images.device) - images
    if reduce == "rms":
        out = d.pow(2).mean(dim=1, keepdim=True).sqrt()
    elif reduce == "l2":
        out = d.pow(2).sum(dim=1, keepdim=True).sqrt()
    elif reduce == "l1":
        out = d.abs().sum(dim=1, keepdim=True)
    else:
        out = d.abs().amax(dim=1, keepdim=True)
    if blur_sigma > 0:
        out = gaussian_blur(out, blur_sigma, mode="replicate").clamp_min(0.0)
    return out


@METHODS.register("ground-truth", help="dataset foreground masks as saliency maps")
class GroundTruth(SaliencyMethod):
    """Dataset foreground masks used as saliency maps (``target`` is ignored).

    Args:
        masks: (N,1,H,W) or (N,H,W) masks in {0,1} for the images the method will be called
            with (in the same order).
        normalize: min-max normalise each map.

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W) in {0,1}.

    Example:
        >>> import foveal
        >>> ds = foveal.data.load("shapes", split="test", n=4)
        >>> gt = GroundTruth.from_dataset(ds)
        >>> bool((gt(ds.images) == ds.masks).all())
        True
    """

    needs_model = False

    def __init__(self, masks: torch.Tensor, *, normalize: bool = False) -> None:
        super().__init__(None, normalize=normalize)
        if not isinstance(masks, torch.Tensor):
            raise TypeError(f"masks must be a torch.Tensor; got {type(masks).__name__}")
        if masks.ndim == 3:
            masks = masks.unsqueeze(1)
        if masks.ndim != 4 or masks.shape[1] != 1:
            raise ValueError(
                f"masks must have shape (N,1,H,W) or (N,H,W); got {tuple(masks.shape)}"
            )
        self.masks = masks.float()

    @classmethod
    def from_dataset(
        cls, dataset: Any, indices: Sequence[int] | torch.Tensor | slice | None = None
    ) -> GroundTruth:
        """The masks of ``dataset`` (an :class:`foveal.data.ArrayDataset`), optionally a subset.

        Raises:
            ValueError: the dataset has no masks.
        """
        masks = getattr(dataset, "masks", None)
        if masks is None:
            name = getattr(dataset, "name", type(dataset).__name__)
            raise ValueError(
                f"ground-truth masks were asked for, but dataset {name!r} has no masks "
                "(use a dataset with masks, e.g. 'shapes' or CUB-200-2011)"
            )
        if indices is not None:
            idx = indices if isinstance(indices, slice) else torch.as_tensor(indices)
            masks = masks[idx]
        return cls(masks)

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        masks = check_mask(self.masks, images, "masks")
        return masks.to(device=images.device, dtype=images.dtype)


@METHODS.register("perturbation", help="per-pixel magnitude of an adversarial perturbation")
class PerturbationMagnitude(SaliencyMethod):
    """Saliency as the magnitude of an adversarial perturbation (Elliott et al. 2019).

    Args:
        model: the classifier (for the predicted class when ``target`` is None).
        attack: a ready ``x_adv`` tensor matching the images of the call, or a callable
            ``attack(x, y) -> x_adv`` such as ``foveal.attacks.PGD(model)``. An attack known by
            name is built by the caller first: ``foveal.attacks.ATTACKS.get(name)(model,
            **kwargs)``.
        reduce: channel reduction of ``x_adv - x`` (see :func:`perturbation_magnitude`).
        blur_sigma: optional Gaussian blur in pixels (0 = none).
        normalize: min-max normalise each map.
        differentiable: keep the graph to ``x_adv`` (when ``attack`` is a tensor that has one).

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W).

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> shift = lambda x, y: (x + 0.01).clamp(0, 1)
        >>> PerturbationMagnitude(attack=shift)(x, target=torch.tensor([0, 1])).shape
        torch.Size([2, 1, 8, 8])
    """

    needs_model = False
    supports_differentiable = True

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | torch.Tensor,
        reduce: str = "rms",
        blur_sigma: float = 0.0,
        normalize: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(model, normalize=normalize, differentiable=differentiable)
        if reduce not in _MAGNITUDES:
            raise ValueError(f"reduce must be one of {_MAGNITUDES}; got {reduce!r}")
        if blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0; got {blur_sigma}")
        if not isinstance(attack, torch.Tensor) and not callable(attack):
            seen = repr(attack) if isinstance(attack, str) else type(attack).__name__
            hint = (
                f" (build a named attack first: foveal.attacks.ATTACKS.get({attack!r})(model))"
                if isinstance(attack, str)
                else ""
            )
            raise TypeError(
                f"attack must be a tensor x_adv or a callable attack(x, y) -> x_adv; "
                f"got {seen}{hint}"
            )
        self.attack = attack
        self.reduce = reduce
        self.blur_sigma = float(blur_sigma)

    def _target(
        self, images: torch.Tensor, target: int | torch.Tensor | None
    ) -> torch.Tensor | None:
        if isinstance(self.attack, torch.Tensor) and target is None:
            return None
        if target is None and self.model is None:
            raise ValueError(
                "PerturbationMagnitude needs target labels for the attack when no model is given"
            )
        return resolve_target(self.model, images, target)

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.attack, torch.Tensor):
            x_adv = self.attack
        else:
            assert target is not None
            x_adv = self.attack(images.detach(), target)
            if not isinstance(x_adv, torch.Tensor):
                raise TypeError(f"the attack must return a tensor; got {type(x_adv).__name__}")
        return perturbation_magnitude(images, x_adv, reduce=self.reduce, blur_sigma=self.blur_sigma)


@METHODS.register("center", help="centred Gaussian blob (image-independent baseline)")
class CenterBaseline(SaliencyMethod):
    """A centred isotropic Gaussian ``exp(-r^2 / (2 (sigma * min(H, W))^2))``, the same for
    every image: the image-independent baseline of localisation benchmarks.

    Args:
        sigma: standard deviation as a fraction of the shorter image side (default 0.25).
        normalize: min-max normalise each map.

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W) with maximum 1 at the centre.
    """

    needs_model = False

    def __init__(self, *, sigma: float = 0.25, normalize: bool = False) -> None:
        super().__init__(None, normalize=normalize)
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0; got {sigma}")
        self.sigma = float(sigma)

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        n, _, h, w = images.shape
        ys = torch.arange(h, device=images.device, dtype=images.dtype) - (h - 1) / 2
        xs = torch.arange(w, device=images.device, dtype=images.dtype) - (w - 1) / 2
        r2 = ys.view(-1, 1) ** 2 + xs.view(1, -1) ** 2
        s = self.sigma * min(h, w)
        blob = torch.exp(-r2 / (2 * s * s))
        return blob.expand(n, 1, h, w).clone()
