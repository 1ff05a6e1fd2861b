"""Models: an architecture registry, the ``Normalized`` wrapper and safetensors checkpoints.

Example:
    >>> import foveal, torch
    >>> model = foveal.models.create("shapes-cnn", num_classes=10)
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from foveal.models.architectures import ARCHITECTURES, default_layer
from foveal.models.checkpoint import CheckpointError, load, read_meta, save
from foveal.models.factory import build, create, describe
from foveal.models.normalized import Normalized, get_layer, unwrap

__all__ = [
    "ARCHITECTURES",
    "CheckpointError",
    "Normalized",
    "build",
    "create",
    "default_layer",
    "describe",
    "get_layer",
    "load",
    "read_meta",
    "save",
    "unwrap",
]
