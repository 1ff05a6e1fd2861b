"""The models, data and detectors an evaluation runs on, and their fingerprints.

- :func:`default_models`: the built-in pair of ``foveal evaluate`` without ``--model``, from
  the reference models of :mod:`foveal.app.zoo`.
- :func:`resolve_models`: checkpoint paths, modules, or a mapping name -> either, as named
  :class:`LoadedModel` objects.
- Fingerprints: a digest of a model's class, structure and every weight, of the evaluation data
  and of a detector's files. Result cells are keyed by them, so a cell computed for one model is
  never reused for another.
- Detectors: any object with ``detect(images) -> bool (N,)``. ``--detector DIR`` loads one with
  ``foveal.detectors.load_detector`` when that package is present (looked up lazily, so
  evaluation works without it).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from foveal.data import ArrayDataset

__all__ = [
    "Detector",
    "LoadedDetector",
    "LoadedModel",
    "data_fingerprint",
    "default_models",
    "model_fingerprint",
    "resolve_detectors",
    "resolve_models",
]

ModelSpec = str | os.PathLike[str] | nn.Module
ModelsLike = ModelSpec | Sequence[ModelSpec] | Mapping[str, ModelSpec] | None


@runtime_checkable
class Detector(Protocol):
    """What the evaluation needs of an adversarial-example detector."""

    def detect(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) bool: True where an image is flagged as adversarial."""
        ...


@dataclass
class LoadedModel:
    """A model under evaluation: its display name, the module and where it came from."""

    name: str
    module: nn.Module
    fingerprint: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedDetector:
    """A detector: display name, the object and its fingerprint."""

    name: str
    detector: Any
    fingerprint: str
    source: str


# ----------------------------------------------------------------------------- fingerprints
def _digest_tensor(h: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous().reshape(-1)
    h.update(f"{t.dtype}:{tuple(tensor.shape)}".encode())
    if t.numel():
        h.update(t.view(torch.uint8).numpy().tobytes())


def model_fingerprint(model: nn.Module) -> str:
    """Digest of the model's class, module structure and every parameter and buffer."""
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    h.update(repr(model).encode())
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        _digest_tensor(h, value)
    return h.hexdigest()[:16]


def data_fingerprint(data: ArrayDataset) -> str:
    """Digest of the images, labels and masks."""
    h = hashlib.sha256()
    _digest_tensor(h, data.images_uint8)
    _digest_tensor(h, data.labels)
    masks = data.masks
    if masks is not None:
        _digest_tensor(h, masks.to(torch.uint8))
    return h.hexdigest()[:16]


def _dir_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- default models
def default_models(*, quick: bool = False, progress: bool = False) -> dict[str, Path]:
    """The built-in ``standard`` and ``madry`` shapes CNNs: the zoo's ``report-standard`` and
    ``report-madry`` at scale ``default`` (``quick``: ``quick``), trained on first use and
    cached (see docs/evaluate.md, "The built-in models"); a KeyboardInterrupt during training
    propagates (the next call resumes it)."""
    from foveal.app.zoo import pretrained

    scale = "quick" if quick else "default"
    return {
        m: pretrained(f"report-{m}", scale=scale, progress=progress) for m in ("standard", "madry")
    }


# ----------------------------------------------------------------------------- resolving
def _named(specs: Any, single: tuple[type, ...]) -> list[tuple[str | None, Any]]:
    """``(name or None, spec)`` of one spec, a sequence of them or a mapping name -> spec."""
    if isinstance(specs, single):
        return [(None, specs)]
    if isinstance(specs, Mapping):
        return [(str(k), v) for k, v in specs.items()]
    return [(None, v) for v in specs]


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate = f"{name}-{k}"
        k += 1
    taken.add(candidate)
    return candidate


def resolve_models(
    models: ModelsLike, *, device: str | torch.device = "cpu", role: str = "model"
) -> list[LoadedModel]:
    """Load checkpoints / accept modules; names come from the mapping keys, else the checkpoint
    directory names, else ``model-1``, ``model-2``, ...

    Raises:
        TypeError: an entry is neither a path nor an ``nn.Module``.
        foveal.models.CheckpointError: a path is not a foveal checkpoint.
    """
    import foveal

    if models is None:
        return []
    if not isinstance(models, (str, os.PathLike, nn.Module, Mapping, Sequence)):
        raise TypeError(
            f"{role}s must be a path, an nn.Module, a sequence or a mapping of them; got "
            f"{type(models).__name__}"
        )
    taken: set[str] = set()
    out: list[LoadedModel] = []
    for i, (name, spec) in enumerate(_named(models, (str, os.PathLike, nn.Module)), start=1):
        if isinstance(spec, nn.Module):
            module, source, meta = spec.to(device), "python object", {}
            default = f"{role}-{i}"
        elif isinstance(spec, (str, os.PathLike)):
            path = Path(spec)
            meta = foveal.models.read_meta(path)
            module = foveal.models.load(path, map_location=device)
            source = str(path)
            default = path.resolve().name or f"{role}-{i}"
        else:
            raise TypeError(
                f"{role} {i} must be a checkpoint path or an nn.Module; got {type(spec).__name__}"
            )
        module.eval()
        final = _unique(name if name is not None else default, taken)
        out.append(LoadedModel(final, module, model_fingerprint(module), source, meta))
    return out


def _load_detector_dir(path: Path, model: nn.Module | None) -> Any:
    try:
        detectors = importlib.import_module("foveal.detectors")
    except ModuleNotFoundError:
        raise ValueError(
            f"--detector {str(path)!r}: loading detectors needs the foveal.detectors package, "
            "which this installation does not have"
        ) from None
    loader = getattr(detectors, "load_detector", None) or getattr(detectors, "load", None)
    if not callable(loader):
        raise ValueError(
            f"--detector {str(path)!r}: foveal.detectors has no load_detector(path) function "
            "to read it"
        )
    params = inspect.signature(loader).parameters
    if "model" in params and model is not None:
        return loader(path, model=model)
    return loader(path)


def resolve_detectors(
    detectors: Sequence[Any] | Mapping[str, Any] | None, *, model: nn.Module | None = None
) -> list[LoadedDetector]:
    """Detector objects (anything with ``detect``) or directories saved by ``foveal.detectors``.

    ``model`` is passed to ``foveal.detectors.load_detector(path, model=...)`` when the loader
    takes it (detectors that look at the classifier's gradients or saliency need it).
    """
    if detectors is None:
        return []
    taken: set[str] = set()
    out: list[LoadedDetector] = []
    for i, (name, spec) in enumerate(_named(detectors, (str, os.PathLike)), start=1):
        if isinstance(spec, (str, os.PathLike)):
            path = Path(spec)
            if not path.exists():
                raise ValueError(f"detector {str(path)!r} does not exist")
            obj = _load_detector_dir(path, model)
            fp, source, default = _dir_fingerprint(path), str(path), path.resolve().name
        else:
            obj, source, default = spec, "python object", f"detector-{i}"
            fp = hashlib.sha256(
                f"{type(spec).__module__}.{type(spec).__qualname__}:{name or default}".encode()
            ).hexdigest()[:16]
        if not callable(getattr(obj, "detect", None)):
            raise TypeError(
                f"detector {name or default!r} must have a detect(images) -> bool (N,) method; "
                f"got {type(obj).__name__}"
            )
        final = _unique(name if name is not None else default, taken)
        out.append(LoadedDetector(final, obj, fp, source))
    return out
