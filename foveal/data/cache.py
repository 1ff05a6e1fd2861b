"""On-disk cache of generated datasets, keyed by every generation parameter (safetensors)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from foveal.io import atomic_path

__all__ = ["cache_dir", "cached_tensors"]


def cache_dir() -> Path:
    """``$FOVEAL_CACHE`` if set, else ``$XDG_CACHE_HOME/foveal`` or ``~/.cache/foveal``."""
    env = os.environ.get("FOVEAL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "foveal"


def cached_tensors(
    kind: str, params: dict[str, Any], make: Callable[[], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Return ``make()``'s tensors, cached under a key hashing ``kind`` and ``params``."""
    key = hashlib.sha256(json.dumps([kind, params], sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / kind / f"{key}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))
        except (SafetensorError, OSError):
            path.unlink(missing_ok=True)  # a corrupt cache entry is regenerated
    tensors = make()
    try:
        with atomic_path(path) as tmp:
            save_file(
                {k: v.contiguous() for k, v in tensors.items()},
                str(tmp),
                metadata={"params": json.dumps(params, sort_keys=True)},
            )
    except OSError:
        pass  # a read-only cache directory only costs regeneration next time
    return tensors
