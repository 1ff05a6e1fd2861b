"""Class-activation maps: Grad-CAM (through captum) and CAM (written here).

- :class:`GradCAM` (Selvaraju et al. 2017) delegates to captum's ``LayerGradCam``:
  ``alpha_k = mean_ij d y_c / d A_k(ij)`` on the logits, ``ReLU(sum_k alpha_k A_k)``, then
  bilinear upsampling to the image size (captum's ``LayerAttribution.interpolate``).
- :class:`CAM` (Zhou et al. 2016) is written here because captum has no CAM: for a network
  whose head is global average pooling followed by one linear layer, ``M_c = sum_k w_ck A_k``
  on the last convolutional maps, passed through ReLU (so maps are non-negative, like
  Grad-CAM's) and upsampled bilinearly. The head is checked numerically on each batch: CAM
  raises ``ValueError`` if the logits are not the linear layer applied to the pooled maps.

The layer is given by name (dotted, relative to the model or to the architecture inside
:class:`foveal.models.Normalized`), taken from ``foveal.models.default_layer(arch)`` when
``arch`` is given, or detected as the last top-level block that contains a ``Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foveal.models import default_layer, get_layer, unwrap
from foveal.saliency.base import METHODS, SaliencyMethod

__all__ = ["CAM", "GradCAM", "find_last_conv_block", "resolve_layer"]


def find_last_conv_block(model: nn.Module) -> str:
    """Dotted name of the last top-level block of ``unwrap(model)`` that contains a Conv2d.

    Containers with a single child are descended into, so ``Sequential(Sequential(...))``
    resolves to a block of the inner one.

    Example:
        >>> import foveal
        >>> find_last_conv_block(foveal.models.create("shapes-cnn"))
        'features'
    """
    root = unwrap(model)
    prefix = ""
    children = list(root.named_children())
    while len(children) == 1 and list(children[0][1].children()):
        name, child = children[0]
        prefix = f"{prefix}{name}."
        children = list(child.named_children())
    found = None
    for name, child in children:
        if isinstance(child, nn.Conv2d) or any(isinstance(m, nn.Conv2d) for m in child.modules()):
            found = name
    if found is None:
        raise ValueError(
            f"no Conv2d found in the model ({type(root).__name__}); pass layer= explicitly"
        )
    return prefix + found


def resolve_layer(
    model: nn.Module, layer: str | nn.Module | None = None, arch: str | None = None
) -> nn.Module:
    """The module for activations: ``layer`` (name or module), the arch default, or detected."""
    if isinstance(layer, nn.Module):
        return layer
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"layer must be a name, a module or None; got {type(layer).__name__}")
    if layer is None:
        layer = default_layer(arch) if arch is not None else find_last_conv_block(model)
    return get_layer(model, layer)


class _LayerMethod(SaliencyMethod):
    takes_layer = True

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: str | nn.Module | None = None,
        arch: str | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(model, normalize=normalize)
        self.layer = resolve_layer(model, layer, arch)
        self.layer_name = layer if isinstance(layer, str) else None


@METHODS.register("gradcam", help="Grad-CAM on the last conv block (captum LayerGradCam)")
class GradCAM(_LayerMethod):
    """Grad-CAM of ``target`` on ``layer``, upsampled bilinearly to the image size (captum).

    Args:
        model: classifier taking [0,1] pixels.
        layer: dotted layer name or module; default ``default_layer(arch)`` or the last
            Conv2d-containing block.
        arch: registered architecture name, to use its default layer.
        normalize: min-max normalise each map to [0,1].

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W).

    Example:
        >>> import foveal
        >>> cam = GradCAM(foveal.models.create("shapes-cnn"), arch="shapes-cnn")
        >>> cam(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        from captum.attr import LayerAttribution, LayerGradCam

        assert self.model is not None and target is not None
        x = images.detach().clone().requires_grad_(True)
        attr = LayerGradCam(self.model, self.layer).attribute(
            x, target=target, relu_attributions=True
        )
        if attr.ndim != 4:
            raise ValueError(
                f"Grad-CAM needs a layer with (N,K,h,w) outputs; layer output gave attributions "
                f"of shape {tuple(attr.shape)}"
            )
        up = LayerAttribution.interpolate(attr.detach(), tuple(images.shape[2:]), "bilinear")
        return up.clamp_min(0.0)


@METHODS.register("cam", help="class activation map of a GAP + linear network")
class CAM(_LayerMethod):
    """Class activation map ``ReLU(sum_k w_ck A_k)`` for a GAP + linear network.

    ``A`` are the outputs of ``layer`` (the last convolutional block) and ``w`` the weight of
    ``head`` (default: the last ``nn.Linear`` of the model). Each call checks that the
    logits equal ``w @ mean_ij A + b``; other architectures raise ``ValueError`` (use Grad-CAM).

    Args:
        model: classifier taking [0,1] pixels with a GAP + linear head.
        layer: dotted layer name or module of the last conv block (see :class:`GradCAM`).
        arch: registered architecture name, to use its default layer.
        head: the final linear layer (name or module; default the last ``nn.Linear``).
        normalize: min-max normalise each map to [0,1].

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: str | nn.Module | None = None,
        arch: str | None = None,
        head: str | nn.Module | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(model, layer=layer, arch=arch, normalize=normalize)
        if head is None:
            linears = [m for m in unwrap(model).modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ValueError("CAM needs a GAP + linear network; the model has no nn.Linear")
            found: nn.Module = linears[-1]
        else:
            found = get_layer(model, head) if isinstance(head, str) else head
        if not isinstance(found, nn.Linear):
            raise TypeError(f"head must be an nn.Linear; got {type(found).__name__}")
        self.head: nn.Linear = found

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert self.model is not None and target is not None
        store: list[torch.Tensor] = []
        handle = self.layer.register_forward_hook(lambda _m, _i, out: store.append(out))
        try:
            with torch.no_grad():
                logits = self.model(images)
        finally:
            handle.remove()
        acts = store[-1]
        weight: torch.Tensor = self.head.weight
        bias: torch.Tensor | None = self.head.bias
        if acts.ndim != 4 or acts.shape[1] != weight.shape[1]:
            raise ValueError(
                f"CAM needs the layer's (N,K,h,w) maps to feed the linear head (K="
                f"{weight.shape[1]}); the layer gave shape {tuple(acts.shape)}"
            )
        pooled = acts.mean(dim=(2, 3)) @ weight.T + (0 if bias is None else bias)
        if not torch.allclose(pooled, logits, rtol=1e-3, atol=1e-3 * (1 + logits.abs().max())):
            raise ValueError(
                "CAM needs a network whose logits are a linear layer on the globally averaged "
                "maps of `layer`; this model's are not (use GradCAM instead)"
            )
        w = weight[target]  # (N, K)
        cam = torch.einsum("nk,nkhw->nhw", w, acts).unsqueeze(1).clamp_min(0.0)
        return F.interpolate(cam, size=tuple(images.shape[2:]), mode="bilinear")
