"""The binary CNNs of the SMD/SPD paper (Appendix A), used by the ID, JSD, SMD and SPD detectors.

The SMD/SPD paper builds every detector with "the same architecture (and hyper-parameters) as for
the black-box image classifiers", one per dataset, with dropout 0.6 before every dense layer, ReLU
activations and Adam. Three specifications, chosen per dataset (``arch="auto"`` picks from the
images the detector is fitted on: grey images -> ``mnist``, colour images below 96 pixels ->
``cifar``, larger ones -> ``assira``):

- ``mnist``: conv 64 (k=8), conv 128 (k=6), conv 128 (k=3), dense 2. As in
  :class:`foveal.models.architectures.MnistCNN`, one convolution per row with strides 2, 2, 1
  (the cleverhans basic CNN the paper used), because 8/6/3 kernels cannot be stacked twice
  unpadded on 28x28 inputs.
- ``cifar``: 4 x conv 32, pool, 4 x conv 63, pool, 4 x conv 128, pool, dense 128, dense 2
  (3x3 kernels, ``same`` padding, 2x2 max-pooling).
- ``assira``: 2 x conv 64, pool, 2 x conv 128, pool, 2 x conv 256, pool, 2 x conv 512, pool,
  dense 256, dense 256, dense 2.

``width`` scales every convolution's number of filters (1.0 = the paper); the dense layers keep
their sizes. Weights start from He (Kaiming) normal initialisation: with PyTorch's default
initialisation the 12 plain ReLU convolutions of the ``cifar`` network shrink the signal so much
that training on small perturbations (BIM, C&W, DeepFool on ``shapes``) stalls at a constant
output. The input is standardised per channel with statistics fitted on the detector's
training inputs (stored as buffers), so inputs of very different scales (images, logit
Jacobians, masks) train with the same learning rate.

Written here: the specifications are the paper's; the modules are plain ``torch.nn``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ARCHS", "DetectorNet", "auto_arch"]

_CIFAR: list[tuple[int, int] | str] = [
    (32, 3), (32, 3), (32, 3), (32, 3), "pool",
    (63, 3), (63, 3), (63, 3), (63, 3), "pool",
    (128, 3), (128, 3), (128, 3), (128, 3), "pool",
]  # fmt: skip
_ASSIRA: list[tuple[int, int] | str] = [
    (64, 3), (64, 3), "pool", (128, 3), (128, 3), "pool",
    (256, 3), (256, 3), "pool", (512, 3), (512, 3), "pool",
]  # fmt: skip

#: Architecture names accepted by :class:`DetectorNet`.
ARCHS = ("mnist", "cifar", "assira")


def auto_arch(channels: int, size: int) -> str:
    """The SMD/SPD paper's architecture for a dataset of ``channels`` x ``size`` x ``size`` images.

    Example:
        >>> auto_arch(1, 28), auto_arch(3, 32), auto_arch(3, 112)
        ('mnist', 'cifar', 'assira')
    """
    if channels == 1:
        return "mnist"
    return "cifar" if size < 96 else "assira"


def _scaled(filters: int, width: float) -> int:
    return max(1, round(filters * width))


class DetectorNet(nn.Module):
    """A CNN of the SMD/SPD paper with two outputs (clean, adversarial) and input standardisation.

    Args:
        arch: ``"mnist"``, ``"cifar"`` or ``"assira"``.
        in_channels: channels of the detector's input (1 for maps, C for images, 2C for JSD).
        input_size: (H, W) of the input.
        width: multiplier of the number of filters (default 1.0, the paper).
        dropout: dropout rate before every dense layer (default 0.6, the paper).

    Shape:
        (N, in_channels, H, W) -> logits (N, 2).

    Example:
        >>> net = DetectorNet(arch="mnist", in_channels=1, input_size=(28, 28), width=0.25)
        >>> net(torch.rand(3, 1, 28, 28)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        *,
        arch: str,
        in_channels: int,
        input_size: tuple[int, int] | list[int],
        width: float = 1.0,
        dropout: float = 0.6,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}; got {arch!r}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1; got {in_channels}")
        if not (width > 0):
            raise ValueError(f"width must be > 0; got {width}")
        if not (0 <= dropout < 1):
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        h, w = (int(s) for s in input_size)
        self.config: dict[str, Any] = {
            "arch": arch,
            "in_channels": int(in_channels),
            "input_size": [h, w],
            "width": float(width),
            "dropout": float(dropout),
        }
        layers: list[nn.Module] = []
        dense: list[int]
        if arch == "mnist":
            c1, c2 = _scaled(64, width), _scaled(128, width)
            layers = [
                nn.Conv2d(in_channels, c1, 8, stride=2, padding=3), nn.ReLU(),
                nn.Conv2d(c1, c2, 6, stride=2), nn.ReLU(),
                nn.Conv2d(c2, c2, 3), nn.ReLU(),
            ]  # fmt: skip
            dense = []
        else:
            spec, dense = (_CIFAR, [128]) if arch == "cifar" else (_ASSIRA, [256, 256])
            c = in_channels
            for item in spec:
                if isinstance(item, str):
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    f = _scaled(item[0], width)
                    layers += [nn.Conv2d(c, f, item[1], padding=1), nn.ReLU()]
                    c = f
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            try:
                flat = self.features(torch.zeros(1, in_channels, h, w)).numel()
            except RuntimeError as exc:
                raise ValueError(
                    f"input size {h}x{w} is too small for the {arch!r} detector network ({exc})"
                ) from None
        head: list[nn.Module] = [nn.Flatten()]
        cin = flat
        for units in dense:
            head += [nn.Dropout(dropout), nn.Linear(cin, units), nn.ReLU()]
            cin = units
        head += [nn.Dropout(dropout), nn.Linear(cin, 2)]
        self.classifier = nn.Sequential(*head)
        self.register_buffer("mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("std", torch.ones(1, in_channels, 1, 1))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    mean: torch.Tensor
    std: torch.Tensor

    @torch.no_grad()
    def set_standardization(self, inputs: torch.Tensor) -> None:
        """Per-channel mean and std of ``inputs`` (N, in_channels, H, W) become the buffers."""
        mean = inputs.mean(dim=(0, 2, 3)).reshape(1, -1, 1, 1)
        std = inputs.std(dim=(0, 2, 3)).reshape(1, -1, 1, 1)
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features((x - self.mean) / self.std))
