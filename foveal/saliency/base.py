"""The saliency-method protocol: one class per method, one call, maps back on the input's device.

Every method is called as ``method(images, target=None)`` and returns a non-negative map of
shape (N,1,H,W) on the device of ``images``. :class:`SaliencyMethod` owns what every method
must get right — input validation, resolving the target (the predicted class by default),
putting the model in eval mode and restoring its mode afterwards, the output checks and the
optional per-image normalisation — so that each subclass only implements :meth:`_compute`.

What a method needs is declared on its class (``needs_model``, ``supports_differentiable``,
``stochastic``, ``takes_layer``, ``takes_masker``), so callers such as the command line ask the
class found in :data:`METHODS`, never the method's name.

This module is written by hand: it is the glue between foveal's conventions (pixel space
[0,1], explicit targets, restored model mode) and the libraries the methods delegate to.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from foveal._modes import eval_mode
from foveal._validation import check_images, check_labels
from foveal.registry import Registry

__all__ = [
    "METHODS",
    "SaliencyMethod",
    "create_method",
    "eval_mode",
    "normalize_maps",
    "resolve_target",
]

#: Registry of saliency methods: name -> class (drives the CLI, the tests and the docs).
METHODS: Registry[type[SaliencyMethod]] = Registry("saliency method")


def resolve_target(
    model: nn.Module | None,
    images: torch.Tensor,
    target: int | torch.Tensor | None,
) -> torch.Tensor:
    """Turn ``target`` into an int64 tensor of shape (N,) on the images' device.

    Args:
        model: the classifier (needed only when ``target`` is None).
        images: (N,C,H,W) batch.
        target: None (the model's predicted class), an int (same class for every image) or
            a tensor of N class indices.
    """
    n = images.shape[0]
    if target is None:
        if model is None:
            raise ValueError("target=None asks for the predicted class, but no model was given")
        with torch.no_grad():
            return model(images).argmax(dim=1).to(images.device)
    if isinstance(target, bool):
        raise TypeError(f"target must be an int or a tensor of class indices; got {target!r}")
    if isinstance(target, int):
        if target < 0:
            raise ValueError(f"target must be >= 0; got {target}")
        return torch.full((n,), target, dtype=torch.long, device=images.device)
    labels = check_labels(target, n, name="target")
    return labels.to(device=images.device, dtype=torch.long)


def normalize_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise each map of a (N,1,H,W) batch to [0,1] (constant maps become 0).

    Example:
        >>> normalize_maps(torch.tensor([[[[1.0, 3.0]]]]))
        tensor([[[[0., 1.]]]])
    """
    flat = maps.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > eps, (flat - lo) / span.clamp_min(eps), torch.zeros_like(flat))
    return out.view_as(maps)


class SaliencyMethod(abc.ABC):
    """Base class of every saliency method.

    Args:
        model: the classifier (taking [0,1] pixels, e.g. a :class:`foveal.models.Normalized`);
            None for methods that need no classifier (fixation models, ground truth).
        normalize: min-max normalise each map to [0,1] (default False: raw non-negative maps).
        differentiable: keep the autograd graph from ``images`` to the map (only methods with
            ``supports_differentiable`` allow it); by default maps are detached.

    Shape:
        images (N,C,H,W) in [0,1]; target None, an int or (N,) int64; output (N,1,H,W) >= 0.
    """

    #: Whether a classifier is required.
    needs_model: ClassVar[bool] = True
    #: Whether ``differentiable=True`` is supported.
    supports_differentiable: ClassVar[bool] = False
    #: Whether the method draws random numbers (then it takes a ``seed``).
    stochastic: ClassVar[bool] = False
    #: Whether the method reads a layer's activations (then it takes ``layer=`` and ``arch=``,
    #: whose default layer it uses).
    takes_layer: ClassVar[bool] = False
    #: Whether the method needs a learned masking model (``masker=``, a model or its directory).
    takes_masker: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        normalize: bool = False,
        differentiable: bool = False,
    ) -> None:
        if self.needs_model and model is None:
            raise ValueError(f"{type(self).__name__} needs a classifier; got model=None")
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if differentiable and not self.supports_differentiable:
            raise ValueError(
                f"{type(self).__name__} cannot return differentiable maps (differentiable=True)"
            )
        self.model = model
        self.normalize = bool(normalize)
        self.differentiable = bool(differentiable)

    def __call__(
        self, images: torch.Tensor, target: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Compute the maps of ``images`` for ``target`` (None: the predicted class)."""
        images = check_images(images)
        with eval_mode(self.model):
            labels = self._target(images, target)
            maps = self._compute(images, labels)
        n, _, h, w = images.shape
        if maps.shape != (n, 1, h, w):
            raise RuntimeError(
                f"{type(self).__name__} produced maps of shape {tuple(maps.shape)}; "
                f"expected {(n, 1, h, w)}"
            )
        maps = maps.to(images.device)
        if not self.differentiable:
            maps = maps.detach()
        if self.normalize:
            maps = normalize_maps(maps)
        return maps

    def _target(
        self, images: torch.Tensor, target: int | torch.Tensor | None
    ) -> torch.Tensor | None:
        if not self.needs_model and target is None:
            return None
        return resolve_target(self.model, images, target)

    @abc.abstractmethod
    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Return (N,1,H,W) non-negative maps; ``target`` is (N,) int64 or None."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def create_method(name: str, model: nn.Module | None = None, **kwargs: Any) -> SaliencyMethod:
    """Build the registered method ``name`` (see ``METHODS.names()``).

    Example:
        >>> from foveal.models import create
        >>> method = create_method("gradcam", create("shapes-cnn"))
    """
    import inspect

    cls = METHODS.get(name)
    if cls.needs_model:
        return cls(model, **kwargs)
    if model is not None and "model" in inspect.signature(cls).parameters:
        kwargs = {"model": model, **kwargs}
    return cls(**kwargs)
