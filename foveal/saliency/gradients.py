"""Gradient-based saliency maps, computed with captum.

- :class:`Gradient` — vanilla gradient (Simonyan et al. 2014), captum ``Saliency``.
- :class:`SmoothGrad` — noisy-average gradient (Smilkov et al. 2017). The gradients come from
  captum ``Saliency``; the noise is drawn here rather than by captum's ``NoiseTunnel``, because
  ``NoiseTunnel`` draws one noise tensor for the whole expanded batch from the global generator,
  so a sample's map would depend on the batch it sits in. Here every image receives the same
  ``n_samples`` noise draws from an explicit seed: batched results equal per-sample results.
- :class:`IntegratedGradients` — Sundararajan et al. 2017, captum ``IntegratedGradients``.
- :class:`GuidedBackprop` — Springenberg et al. 2015, captum ``GuidedBackprop`` (needs the
  model's ReLUs to be ``nn.ReLU`` modules).
- :class:`InputXGradient` — Shrikumar et al. 2016, captum ``InputXGradient``.

Attributions (N,C,H,W) become maps (N,1,H,W) by taking absolute values and reducing over the
channels: the maximum for gradient-like maps (Simonyan's rule), the sum for the additive
attributions (IG and input x gradient, whose channel sum keeps their completeness property).
All gradients are taken with respect to the input only: model parameters' ``.grad`` are
untouched.
"""

from __future__ import annotations

import abc
import warnings
from typing import Any

import torch
from torch import nn

from foveal.saliency.base import METHODS, SaliencyMethod

__all__ = ["Gradient", "GuidedBackprop", "InputXGradient", "IntegratedGradients", "SmoothGrad"]

_REDUCTIONS = ("max", "sum", "mean")


def reduce_channels(attributions: torch.Tensor, reduce: str) -> torch.Tensor:
    """``|attributions|`` (N,C,H,W) reduced over channels to (N,1,H,W): max, sum or mean."""
    mag = attributions.abs()
    if reduce == "max":
        return mag.amax(dim=1, keepdim=True)
    if reduce == "sum":
        return mag.sum(dim=1, keepdim=True)
    if reduce == "mean":
        return mag.mean(dim=1, keepdim=True)
    raise ValueError(f"reduce must be one of {_REDUCTIONS}; got {reduce!r}")


def _check_reduce(reduce: str) -> str:
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}; got {reduce!r}")
    return reduce


class _CaptumMethod(SaliencyMethod):
    """Shared constructor of the captum-backed attribution methods."""

    default_reduce = "max"

    def __init__(
        self,
        model: nn.Module,
        *,
        reduce: str | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(model, normalize=normalize)
        self.reduce = _check_reduce(self.default_reduce if reduce is None else reduce)

    @property
    def _model(self) -> nn.Module:
        assert self.model is not None
        return self.model

    @abc.abstractmethod
    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Signed or absolute attributions (N,C,H,W) of ``images`` (which require grad)."""

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        x = images.detach().clone().requires_grad_(True)
        return reduce_channels(self._attribute(x, target).detach(), self.reduce)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduce={self.reduce!r})"


@METHODS.register("gradient", help="vanilla gradient |d logit_c / d x| (captum Saliency)")
class Gradient(_CaptumMethod):
    """Vanilla gradient saliency: ``max_c |d y_target / d x_c|`` (logits, captum ``Saliency``).

    Args:
        model: classifier taking [0,1] pixels.
        reduce: channel reduction of ``|grad|`` — ``"max"`` (default), ``"sum"`` or ``"mean"``.
        normalize: min-max normalise each map to [0,1].

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W).

    Example:
        >>> import foveal
        >>> maps = Gradient(foveal.models.create("shapes-cnn"))(torch.rand(2, 3, 32, 32))
        >>> maps.shape
        torch.Size([2, 1, 32, 32])
    """

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import Saliency

        return Saliency(self._model).attribute(images, target=target, abs=True)


@METHODS.register("smoothgrad", help="SmoothGrad: gradient averaged over Gaussian noise")
class SmoothGrad(_CaptumMethod):
    """SmoothGrad: ``|grad|`` averaged over ``n_samples`` noisy copies of each image.

    The noise ``N(0, sigma^2)`` is drawn in pixel space from a generator seeded with ``seed``
    at every call; every image receives the same draws, so maps do not depend on the batch
    composition and repeated calls agree. The noisy images are not clipped to [0,1] (as in
    the paper). The absolute gradient is averaged (captum's ``Saliency(abs=True)`` per draw).

    Args:
        model: classifier taking [0,1] pixels.
        n_samples: noisy copies per image (default 20).
        sigma: noise standard deviation in pixel units (default 0.15, i.e. 15% of the range,
            the paper's recommended 10-20%).
        seed: seed of the noise generator (default 0).
        reduce: channel reduction (default ``"max"``).
        normalize: min-max normalise each map to [0,1].

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W).

    Example:
        >>> import foveal
        >>> sg = SmoothGrad(foveal.models.create("shapes-cnn"), n_samples=4)
        >>> sg(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    stochastic = True

    def __init__(
        self,
        model: nn.Module,
        *,
        n_samples: int = 20,
        sigma: float = 0.15,
        seed: int = 0,
        reduce: str | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(model, reduce=reduce, normalize=normalize)
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1; got {n_samples}")
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0; got {sigma}")
        self.n_samples = int(n_samples)
        self.sigma = float(sigma)
        self.seed = int(seed)

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import Saliency

        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        saliency = Saliency(self._model)
        total = torch.zeros_like(images)
        for _ in range(self.n_samples):
            noise = torch.randn(images.shape[1:], generator=gen).to(images.device) * self.sigma
            x = (images.detach() + noise).requires_grad_(True)
            total += saliency.attribute(x, target=target, abs=True).detach()
        return total / self.n_samples

    def __repr__(self) -> str:
        return (
            f"SmoothGrad(n_samples={self.n_samples}, sigma={self.sigma:g}, seed={self.seed}, "
            f"reduce={self.reduce!r})"
        )


@METHODS.register("ig", help="Integrated Gradients from a black baseline (captum)")
class IntegratedGradients(_CaptumMethod):
    """Integrated Gradients along the straight path from ``baseline`` to the image (captum).

    Args:
        model: classifier taking [0,1] pixels.
        n_steps: quadrature points (default 32, Gauss-Legendre as captum's default method).
        baseline: constant baseline pixel value (default 0.0, a black image).
        internal_batch_size: passed to captum to bound memory (default None: all at once).
        reduce: channel reduction of ``|attribution|`` (default ``"sum"``).
        normalize: min-max normalise each map to [0,1].

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W).

    Example:
        >>> import foveal
        >>> ig = IntegratedGradients(foveal.models.create("shapes-cnn"), n_steps=8)
        >>> ig(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    default_reduce = "sum"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_steps: int = 32,
        baseline: float = 0.0,
        internal_batch_size: int | None = None,
        reduce: str | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(model, reduce=reduce, normalize=normalize)
        if int(n_steps) < 1:
            raise ValueError(f"n_steps must be >= 1; got {n_steps}")
        if not 0.0 <= baseline <= 1.0:
            raise ValueError(f"baseline must lie in [0, 1]; got {baseline}")
        self.n_steps = int(n_steps)
        self.baseline = float(baseline)
        self.internal_batch_size = internal_batch_size

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import IntegratedGradients as CaptumIG

        kwargs: dict[str, Any] = {"n_steps": self.n_steps}
        if self.internal_batch_size is not None:
            kwargs["internal_batch_size"] = self.internal_batch_size
        attr = CaptumIG(self._model).attribute(
            images, baselines=self.baseline, target=target, **kwargs
        )
        return attr


@METHODS.register("guided-backprop", help="Guided Backpropagation (captum)")
class GuidedBackprop(_CaptumMethod):
    """Guided Backpropagation (captum ``GuidedBackprop``): only positive gradients pass ReLUs.

    The model's non-linearities must be ``nn.ReLU`` modules (captum overrides their backward
    pass); functional ``F.relu`` calls are not guided.

    Args:
        model: classifier taking [0,1] pixels.
        reduce: channel reduction of ``|attribution|`` (default ``"max"``).
        normalize: min-max normalise each map to [0,1].

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W).
    """

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import GuidedBackprop as CaptumGB

        with warnings.catch_warnings():
            # captum announces that it hooks the ReLUs (and removes the hooks afterwards).
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            return CaptumGB(self._model).attribute(images, target=target)


@METHODS.register("input-x-gradient", help="input x gradient (captum)")
class InputXGradient(_CaptumMethod):
    """Input x gradient (captum ``InputXGradient``), ``|x * d y_target / d x|``.

    Args:
        model: classifier taking [0,1] pixels.
        reduce: channel reduction of ``|attribution|`` (default ``"sum"``).
        normalize: min-max normalise each map to [0,1].

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W).
    """

    default_reduce = "sum"

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import InputXGradient as CaptumIxG

        return CaptumIxG(self._model).attribute(images, target=target)
