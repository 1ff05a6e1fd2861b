"""``Normalized``: put normalisation inside the model so that every model takes [0,1] pixels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Normalized", "get_layer", "unwrap"]


class Normalized(nn.Module):
    """Wrap ``model`` so that it takes pixels in [0,1] and normalises them itself.

    Args:
        model: a module expecting normalised inputs.
        mean, std: per-channel statistics (sequences of length C, or scalars).

    Example:
        >>> from torch import nn
        >>> net = Normalized(nn.Conv2d(3, 4, 1), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        >>> net(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self, model: nn.Module, mean: Sequence[float] | float, std: Sequence[float] | float
    ) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device="cpu").reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32, device="cpu").reshape(-1)
        if mean_t.shape != std_t.shape:
            raise ValueError(
                f"mean and std must have the same length; got {mean_t.numel()} and {std_t.numel()}"
            )
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be > 0; got {std_t.tolist()}")
        self.model = model
        self.register_buffer("mean", mean_t.reshape(1, -1, 1, 1))
        self.register_buffer("std", std_t.reshape(1, -1, 1, 1))

    mean: torch.Tensor
    std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def unwrap(model: nn.Module) -> nn.Module:
    """The architecture inside any :class:`Normalized` (and DDP) wrappers."""
    while isinstance(model, Normalized) or hasattr(model, "module"):
        model = model.model if isinstance(model, Normalized) else model.module  # type: ignore[assignment]
    return model


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Find a sub-module by dotted ``name``, relative to the model or to the unwrapped model."""
    for root in (model, unwrap(model)):
        try:
            return root.get_submodule(name)
        except AttributeError:
            continue
    names = [n for n, _ in unwrap(model).named_modules() if n][:30]
    raise ValueError(f"layer {name!r} not found in the model; available layers include {names}")
