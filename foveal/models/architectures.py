"""Model architectures, registered by name.

- ``shapes-cnn``: a compact, fast CNN for the built-in ``shapes`` data (conv blocks, global
  average pooling, one linear layer, so CAM applies directly).
- ``mnist-cnn``, ``cifar-cnn``, ``assira-cnn``: the three classifier CNNs of the SMD/SPD paper
  (Appendix A: "Model-based saliency for the detection of adversarial examples"), with dropout
  0.6 before every dense layer. Convolutions are unpadded in the MNIST net (as the 8/6/3 kernel
  sizes imply) and ``same``-padded in the others.
- ``resnet18``, ``resnet34``: torchvision ResNets with the small-input stem of Tong et al. 2020
  (3x3 stride-1 first convolution, no max-pool), any number of classes.

Every constructor takes ``num_classes`` and ``in_channels`` keywords and returns an
``nn.Module`` that expects *normalised* inputs; wrap it in :class:`foveal.models.Normalized`
so that it takes [0,1] pixels (``foveal.models.create`` does this).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from foveal.registry import Registry

__all__ = ["ARCHITECTURES", "default_layer"]

ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture")

# The layer each architecture exposes for CAM / Grad-CAM / perceptual losses by default
# (a dotted name relative to the bare architecture).
_DEFAULT_LAYERS: dict[str, str] = {}


def default_layer(arch: str) -> str:
    """Name of the last convolutional block of ``arch`` (for CAM-style methods)."""
    ARCHITECTURES.get(arch)
    return _DEFAULT_LAYERS[arch.lower()]


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class ShapesCNN(nn.Module):
    """Compact CNN: three conv stages (widths w, 2w, 4w), GAP and a linear classifier."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(in_channels, w),
            *_conv_bn(w, w),
            nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w),
            *_conv_bn(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w),
            *_conv_bn(4 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class _PlainCNN(nn.Module):
    """Sequential conv stack + dense head, the style of the SMD/SPD paper's Appendix A."""

    def __init__(
        self,
        *,
        convs: list[tuple[int, int] | str],
        dense: list[int],
        num_classes: int,
        in_channels: int,
        padding: int | str,
        dropout: float = 0.6,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for spec in convs:
            if isinstance(spec, str):  # "pool"
                layers.append(nn.MaxPool2d(2, 2))
            else:
                f, k = spec
                layers += [nn.Conv2d(c, f, k, padding=padding), nn.ReLU()]
                c = f
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        for n in dense:
            head += [nn.Dropout(dropout), nn.LazyLinear(n), nn.ReLU()]
        head += [nn.Dropout(dropout), nn.LazyLinear(num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _materialize(model: nn.Module, in_channels: int, size: int) -> nn.Module:
    """Run one dummy forward so that lazy layers get their shapes (checkpoints need them)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_channels, size, size))
    model.train(was_training)
    return model


@ARCHITECTURES.register("shapes-cnn", help="compact fast CNN for the built-in shapes data")
def shapes_cnn(*, num_classes: int = 10, in_channels: int = 3, width: int = 16, **_: object):
    return ShapesCNN(num_classes=num_classes, in_channels=in_channels, width=width)


_DEFAULT_LAYERS["shapes-cnn"] = "features"


class MnistCNN(nn.Module):
    """The SMD/SPD paper's MNIST CNN: conv 64 (k=8), conv 128 (k=6), conv 128 (k=3), dense 10.

    The paper's table lists each row as "2 x conv" but 8/6/3 kernels cannot be stacked twice
    unpadded on 28x28 inputs; the implementation it used (the cleverhans basic CNN) has one
    convolution per row with strides 2, 2, 1, which is what this follows (28 -> 14 -> 5 -> 3).
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 8, stride=2, padding=3), nn.ReLU(),
            nn.Conv2d(64, 128, 6, stride=2), nn.ReLU(),
            nn.Conv2d(128, 128, 3), nn.ReLU(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.LazyLinear(num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@ARCHITECTURES.register(
    "mnist-cnn", help="MNIST CNN of the SMD/SPD paper (conv 64/k8, 128/k6, 128/k3)"
)
def mnist_cnn(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, **_: object):
    if input_size < 28:
        raise ValueError(f"mnist-cnn needs input_size >= 28; got {input_size}")
    model = MnistCNN(num_classes=num_classes, in_channels=in_channels)
    return _materialize(model, in_channels, input_size)


_DEFAULT_LAYERS["mnist-cnn"] = "features"


@ARCHITECTURES.register(
    "cifar-cnn", help="CIFAR-10 CNN of the SMD/SPD paper (32-32-63-63-128-128, dense 128)"
)
def cifar_cnn(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, **_: object):
    convs: list[tuple[int, int] | str] = [
        (32, 3), (32, 3), (32, 3), (32, 3), "pool",
        (63, 3), (63, 3), (63, 3), (63, 3), "pool",
        (128, 3), (128, 3), (128, 3), (128, 3), "pool",
    ]  # fmt: skip
    model = _PlainCNN(
        convs=convs, dense=[128], num_classes=num_classes, in_channels=in_channels, padding=1
    )
    return _materialize(model, in_channels, input_size)


_DEFAULT_LAYERS["cifar-cnn"] = "features"


@ARCHITECTURES.register(
    "assira-cnn", help="ASSIRA CNN of the SMD/SPD paper (64-128-256-512, dense 256-256)"
)
def assira_cnn(*, num_classes: int = 2, in_channels: int = 3, input_size: int = 112, **_: object):
    convs: list[tuple[int, int] | str] = [
        (64, 3), (64, 3), "pool", (128, 3), (128, 3), "pool",
        (256, 3), (256, 3), "pool", (512, 3), (512, 3), "pool",
    ]  # fmt: skip
    model = _PlainCNN(
        convs=convs, dense=[256, 256], num_classes=num_classes, in_channels=in_channels, padding=1
    )
    return _materialize(model, in_channels, input_size)


_DEFAULT_LAYERS["assira-cnn"] = "features"


def _small_input_resnet(depth: int, num_classes: int, in_channels: int) -> nn.Module:
    from torchvision.models import resnet18, resnet34

    net = (resnet18 if depth == 18 else resnet34)(weights=None, num_classes=num_classes)
    # Tong et al. 2020: 3x3 stride-1 first convolution, padding 1, for small inputs; no max-pool.
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


@ARCHITECTURES.register("resnet18", help="ResNet-18 with the small-input stem (3x3, stride 1)")
def resnet18_small(*, num_classes: int = 10, in_channels: int = 3, **_: object):
    return _small_input_resnet(18, num_classes, in_channels)


@ARCHITECTURES.register("resnet34", help="ResNet-34 with the small-input stem (3x3, stride 1)")
def resnet34_small(*, num_classes: int = 10, in_channels: int = 3, **_: object):
    return _small_input_resnet(34, num_classes, in_channels)


_DEFAULT_LAYERS["resnet18"] = "layer4"
_DEFAULT_LAYERS["resnet34"] = "layer4"
