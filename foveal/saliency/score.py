"""Foreground score (Tong et al. 2020): the fixation-density mass that falls inside the foreground.

``S(x) = sum_{i in F} s_i(x) / sum_i s_i(x)`` with ``s`` a fixation density (DeepGaze II in
Tong et al. 2020; :class:`foveal.saliency.SpectralResidual` or any :class:`DensityModel` here) and
``F`` the foreground mask. A score well above the foreground's area fraction means human-like
attention concentrates on the object. Written here (a masked, batched sum); with a
differentiable density it is differentiable in the image, which the dual-perturbation attack
uses when it maximises ``CE + lambda * S(x + delta)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from foveal._validation import check_images

__all__ = ["ForegroundScore", "foreground_score"]


def foreground_score(density: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Mass of ``density`` inside ``foreground``, per image.

    Args:
        density: (N,1,H,W) non-negative maps (normalised here, so any scale works).
        foreground: (N,1,H,W) or (N,C,H,W) {0,1} masks; a pixel is foreground if any channel is.

    Returns:
        (N,) scores in [0,1], differentiable with respect to ``density``.

    Example:
        >>> d = torch.full((1, 1, 2, 2), 0.25)
        >>> foreground_score(d, torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
        tensor([0.2500])
    """
    if not isinstance(density, torch.Tensor) or density.ndim != 4 or density.shape[1] != 1:
        shape = tuple(density.shape) if isinstance(density, torch.Tensor) else type(density)
        raise ValueError(f"density must have shape (N,1,H,W); got {shape}")
    if not isinstance(foreground, torch.Tensor):
        raise TypeError(f"foreground must be a torch.Tensor; got {type(foreground).__name__}")
    n, _, h, w = density.shape
    if foreground.ndim != 4 or foreground.shape[0] != n or foreground.shape[2:] != (h, w):
        raise ValueError(
            f"foreground must have shape ({n},1,{h},{w}) or ({n},C,{h},{w}) to match density; "
            f"got {tuple(foreground.shape)}"
        )
    if bool(((foreground != 0) & (foreground != 1)).any()):
        raise ValueError("foreground must be binary (0/1)")
    with torch.no_grad():
        if bool((density < 0).any()):
            raise ValueError(f"density must be non-negative; observed min {float(density.min()):g}")
    fg = foreground.to(density.device).amax(dim=1, keepdim=True).to(density.dtype)
    total = density.sum(dim=(1, 2, 3)).clamp_min(1e-30)
    return (density * fg).sum(dim=(1, 2, 3)) / total


class ForegroundScore:
    """Callable ``score(images, foreground) -> (N,)`` through a differentiable fixation model.

    Args:
        density: a callable mapping images (N,C,H,W) to densities (N,1,H,W); default a
            differentiable :class:`foveal.saliency.SpectralResidual`.

    Example:
        >>> score = ForegroundScore()
        >>> x = torch.rand(2, 3, 32, 32, requires_grad=True)
        >>> fg = torch.zeros(2, 1, 32, 32); fg[..., 8:24, 8:24] = 1
        >>> score(x, fg).sum().backward()
        >>> x.grad.shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, density: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if density is None:
            from foveal.saliency.fixation import SpectralResidual

            density = SpectralResidual(differentiable=True)
        self.density = density

    def __call__(self, images: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
        check_images(images)
        return foreground_score(self.density(images), foreground)
