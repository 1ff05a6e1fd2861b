"""Building models: a registered architecture inside :class:`Normalized`, or a model rebuilt
from checkpoint metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from foveal.models.architectures import ARCHITECTURES
from foveal.models.meta import validate_meta
from foveal.models.normalized import Normalized

__all__ = ["build", "create", "describe"]


def create(
    arch: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> Normalized:
    """Build architecture ``arch`` wrapped in :class:`Normalized` (identity stats by default)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1; got {in_channels}")
    ctor = ARCHITECTURES.get(arch)
    net = ctor(num_classes=num_classes, in_channels=in_channels, **kwargs)
    mean = [0.0] * in_channels if mean is None else list(mean)
    std = [1.0] * in_channels if std is None else list(std)
    return Normalized(net, mean, std)


def build(meta: dict[str, Any]) -> nn.Module:
    """Rebuild an (untrained) model from checkpoint metadata (validated first: see
    :class:`foveal.models.checkpoint.ModelMeta`)."""
    spec = validate_meta(meta, "metadata")
    kwargs = dict(spec.arch_kwargs)
    kwargs.pop("in_channels", None)
    kwargs.pop("num_classes", None)
    in_channels, num_classes = spec.in_channels, spec.num_classes
    if spec.normalized:
        return create(
            spec.arch,
            num_classes=num_classes,
            in_channels=in_channels,
            mean=spec.mean,
            std=spec.std,
            **kwargs,
        )
    return ARCHITECTURES.get(spec.arch)(num_classes=num_classes, in_channels=in_channels, **kwargs)


def describe(model: nn.Module) -> dict[str, Any]:
    """Architecture-independent facts about a model (parameter count)."""
    return {"parameters": sum(p.numel() for p in model.parameters())}
