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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from foveal.io import atomic_path, atomic_write_text

__all__ = ["CheckpointError", "ModelMeta", "load", "read_meta", "save"]

WEIGHTS = "model.safetensors"
META = "model.json"
_KEY = "foveal"


class CheckpointError(ValueError):
    """Raised when a path is not a readable foveal checkpoint."""


#: Upper bounds on what a checkpoint's description may ask for.
MAX_CLASSES = 100_000
MAX_CHANNELS = 64
MAX_SIDE = 8192
MAX_KWARG = 65_536
MAX_PARAMETERS = 4_000_000_000

_KwargValue = bool | int | float | str | None


class ModelMeta(BaseModel):
    """The validated part of a checkpoint's description (other keys pass through unchecked:
    ``dataset``, ``recipe``, ``metrics``, ... are reported, never used to build the model).

    Example:
        >>> ModelMeta(arch="shapes-cnn", num_classes=10).in_channels
        3
    """

    model_config = ConfigDict(extra="allow", strict=True)

    arch: str
    arch_kwargs: dict[str, _KwargValue] = Field(default_factory=dict)
    num_classes: int = Field(10, ge=2, le=MAX_CLASSES)
    in_channels: int = Field(3, ge=1, le=MAX_CHANNELS)
    input_shape: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    normalized: bool = True

    @field_validator("arch")
    @classmethod
    def _registered(cls, value: str) -> str:
        from foveal.models.architectures import ARCHITECTURES

        ARCHITECTURES.get(value)  # raises naming the closest architectures
        return value

    @field_validator("arch_kwargs")
    @classmethod
    def _bounded(cls, value: dict[str, _KwargValue]) -> dict[str, _KwargValue]:
        for key, v in value.items():
            if key in ("num_classes", "in_channels"):
                continue  # older checkpoints kept them here; the fields above bound them
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if not (abs(v) <= MAX_KWARG):
                    raise ValueError(f"{key!r} must be at most {MAX_KWARG} in size; got {v!r}")
        return value

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (len(value) != 3 or not all(1 <= v <= MAX_SIDE for v in value)):
            raise ValueError(f"must be [C, H, W] with each in [1, {MAX_SIDE}]; got {value!r}")
        return value

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not all(abs(v) < 1e6 for v in value):
            raise ValueError(f"must hold finite values; got {value!r}")
        return value

    def checked(self) -> ModelMeta:
        """Cross-field checks: normalisation statistics match the channels, std > 0."""
        for key in ("mean", "std"):
            stats = getattr(self, key)
            if stats is not None and len(stats) != self.in_channels:
                raise ValueError(
                    f"{key}: needs one value per input channel ({self.in_channels}); got "
                    f"{len(stats)} values"
                )
        if self.std is not None and min(self.std, default=1.0) <= 0:
            raise ValueError(f"std: must be > 0; got {self.std!r}")
        return self


def validate_meta(meta: object, where: str | os.PathLike[str]) -> ModelMeta:
    """``meta`` as a :class:`ModelMeta`; :class:`CheckpointError` naming ``where`` and the key."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: checkpoint metadata must be a JSON object")
    data = dict(meta)
    kwargs = data.get("arch_kwargs")
    if isinstance(kwargs, dict):  # older checkpoints keep the sizes among the keywords
        data.setdefault("in_channels", kwargs.get("in_channels", 3))
        data.setdefault("num_classes", kwargs.get("num_classes", 10))
    for key in ("in_channels", "num_classes"):
        if data.get(key) is None:
            data.pop(key, None)
    try:
        return ModelMeta(**data).checked()
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        raise CheckpointError(
            f"{where}: checkpoint metadata key {key!r}: {msg} (got {err.get('input')!r})"
        ) from None
    except ValueError as exc:
        raise CheckpointError(f"{where}: checkpoint metadata key {exc}") from None


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
