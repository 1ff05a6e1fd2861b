"""Checkpoints as safetensors + JSON metadata; nothing is ever unpickled.

A checkpoint is a directory holding

- ``model.safetensors``: the weights; its header metadata also carries the JSON description
  below under the key ``foveal``, so the file alone is self-describing and is replaced in one
  atomic rename;
- ``model.json``: the same description, for people and tools (architecture, its keyword
  arguments, classes, input shape, normalisation, dataset, training recipe, metrics, foveal
  version).

:func:`load` rebuilds the model from the registry of architectures. A pickle, a truncated file
or any other file fails with a message that says what a checkpoint is.

The metadata is untrusted input, like an image: :func:`read_meta` validates it against
:class:`ModelMeta` (types, ranges and an upper bound on every size; errors name the file and the
key), and :func:`load` builds the model on the ``meta`` device first and compares every tensor
shape the file's header declares with it before anything is allocated, so a checkpoint whose
description asks for a huge model, or whose weights do not fit its description, is refused with
a message instead of an out-of-memory error.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from foveal.io import atomic_path, atomic_write_text
from foveal.models.meta import MAX_PARAMETERS, CheckpointError, ModelMeta, validate_meta

__all__ = ["CheckpointError", "ModelMeta", "load", "read_meta", "save"]

WEIGHTS = "model.safetensors"
META = "model.json"
_KEY = "foveal"


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    # safetensors refuses shared storage; clone makes each tensor its own.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save(model: nn.Module, directory: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Write ``model`` and ``meta`` to ``directory`` atomically; returns the directory.

    ``meta`` must contain ``arch`` (a registered architecture); ``arch_kwargs``, ``mean``,
    ``std``, ``classes``, ``input_shape``, ``dataset``, ``recipe`` and ``metrics`` are
    recommended. The model may be a :class:`Normalized` wrapper (the usual case) or the bare
    architecture.
    """
    from foveal._version import __version__
    from foveal.models.normalized import Normalized

    if "arch" not in meta:
        raise ValueError("meta must name the architecture under 'arch'")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    full = dict(meta)
    full["foveal_version"] = __version__
    full["normalized"] = isinstance(model, Normalized)
    text = json.dumps(full, indent=2, sort_keys=True, default=str)
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(_state_dict(model), str(tmp), metadata={_KEY: text})
    atomic_write_text(out / META, text + "\n")
    return out


def _resolve(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS
    elif p.name == META:
        p = p.with_name(WEIGHTS)
    if not p.exists():
        raise CheckpointError(
            f"no foveal checkpoint at {path!s}: expected a directory containing {WEIGHTS} and "
            f"{META} (written by foveal.models.save or `foveal train`)"
        )
    if p.suffix != ".safetensors":
        with open(p, "rb") as fh:
            head = fh.read(2)
        kind = (
            " (it looks like a pickle; foveal never unpickles files)" if head[:1] == b"\x80" else ""
        )
        raise CheckpointError(
            f"{path!s} is not a foveal checkpoint{kind}: expected a directory containing "
            f"{WEIGHTS} and {META}"
        )
    return p


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON description stored in a checkpoint (from the weights file's header)."""
    weights = _resolve(path)
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{weights} is not a readable safetensors checkpoint (truncated or corrupt?): {exc}"
        ) from None
    if _KEY not in header:
        raise CheckpointError(
            f"{weights} is a safetensors file but not a foveal checkpoint (no '{_KEY}' metadata)"
        )
    try:
        meta = json.loads(header[_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{weights}: corrupt checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or "arch" not in meta:
        raise CheckpointError(f"{weights}: checkpoint metadata lacks the architecture ('arch')")
    validate_meta(meta, weights)
    return meta


def load(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save`; returned in eval mode.

    Raises:
        CheckpointError: ``path`` is not a foveal checkpoint (missing, pickle, truncated, ...).
    """
    from foveal.models.factory import build

    meta = read_meta(path)
    weights = _resolve(path)
    _check_shapes(weights, meta)
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: cannot read the weights ({exc})") from None
    model = build(meta)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights}: weights do not fit architecture {meta['arch']!r}: {exc}"
        ) from None
    model.to(map_location)
    model.eval()
    return model


def _check_shapes(weights: Path, meta: dict[str, Any]) -> None:
    """Build the described model on the ``meta`` device (no memory) and compare its tensors
    with the shapes the file's header declares; refuse a mismatch or an oversized model."""
    from safetensors import safe_open

    from foveal.models.factory import build

    try:
        with torch.device("meta"):
            skeleton = build(meta)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{weights}: checkpoint metadata does not describe a buildable "
            f"{meta.get('arch')!r} ({exc})"
        ) from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    size = sum(math.prod(s) for s in expected.values())
    if size > MAX_PARAMETERS:
        raise CheckpointError(
            f"{weights}: checkpoint metadata describes a model of {size:,} values (more than "
            f"{MAX_PARAMETERS:,}); refusing to build it"
        )
    with safe_open(str(weights), framework="pt") as fh:
        stored = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{weights}: weights do not fit architecture {meta['arch']!r}: missing "
            f"{missing[:5]}, unexpected {extra[:5]}"
        )
    for key, shape in expected.items():
        if stored[key] != shape:
            raise CheckpointError(
                f"{weights}: weights do not fit architecture {meta['arch']!r}: tensor {key!r} "
                f"has shape {list(stored[key])}, the metadata describes {list(shape)}"
            )
