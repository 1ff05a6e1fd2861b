"""The detector interface: fit, score, detect, a threshold for a target false-positive rate,
and checkpoints as safetensors + JSON.

Every detector maps images (N,C,H,W) in [0,1] to one score per image (higher = more likely
adversarial) and flags an image when its score exceeds :attr:`Detector.threshold`.

- :meth:`Detector.fit` learns from clean and (for the supervised detectors) adversarial images,
  given as tensors, datasets with ``.images`` or iterables of batches (a ``DataLoader``);
- what a detector needs is declared on its class and read from the registry, never from its
  name: ``needs_adversarial`` (supervised), ``needs_model`` (the classifier), ``needs_masker``
  (a learned masking model), ``takes_labels`` (``fit(..., labels=)``);
- :meth:`Detector.calibrate` sets the threshold so that at most a fraction ``fpr`` of the given
  held-out clean images is flagged (the usual way to compare detectors at one operating point);
- :meth:`Detector.save` writes ``detector.safetensors`` (every learned array, including the
  parameters of the scikit-learn-style models, as tensors; a JSON description in its header) and
  ``detector.json``; :func:`load_detector` rebuilds any registered detector. Nothing is ever
  pickled: the description is data, validated on load.

Written by hand: this is the glue between foveal's conventions (pixel space [0,1], explicit
seeds, restored model modes, safetensors) and the detectors, which no library shares.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from foveal._validation import check_images, check_probability
from foveal.batching import map_batches
from foveal.registry import Registry

__all__ = [
    "DETECTORS",
    "Detector",
    "collect_images",
    "create_detector",
    "load_detector",
    "threshold_for_fpr",
]

#: Name -> detector class (drives the CLI, the tests and the docs).
DETECTORS: Registry[type[Detector]] = Registry("detector")

WEIGHTS = "detector.safetensors"
META = "detector.json"
_KIND = "detector"

D = TypeVar("D", bound="Detector")


def collect_images(data: object, name: str = "images") -> torch.Tensor:
    """Images (N,C,H,W) in [0,1] from a tensor, a dataset with ``.images`` or batches.

    Batches may be tensors, ``(images, ...)`` tuples or dicts with an ``"image"`` key (what
    ``DataLoader(ArrayDataset)`` yields).

    Example:
        >>> collect_images([torch.zeros(2, 1, 4, 4), (torch.ones(1, 1, 4, 4), 0)]).shape
        torch.Size([3, 1, 4, 4])
    """
    if isinstance(data, torch.Tensor):
        return check_images(data, name)
    images = getattr(data, "images", None)
    if isinstance(images, torch.Tensor):
        return check_images(images, f"{name}.images")
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        parts = []
        for batch in data:
            if isinstance(batch, dict):
                batch = batch.get("image")
            elif isinstance(batch, (tuple, list)):
                batch = batch[0] if batch else None
            if not isinstance(batch, torch.Tensor):
                raise TypeError(
                    f"{name}: batches must be tensors, (images, ...) tuples or dicts with an "
                    f"'image' key; got {type(batch).__name__}"
                )
            parts.append(batch)
        if not parts:
            raise ValueError(f"{name} is empty")
        return check_images(torch.cat(parts), name)
    raise TypeError(
        f"{name} must be an image tensor (N,C,H,W), a dataset with .images or an iterable of "
        f"batches; got {type(data).__name__}"
    )


def threshold_for_fpr(clean_scores: torch.Tensor, fpr: float) -> float:
    """The smallest threshold ``t`` such that at most ``fpr`` of ``clean_scores`` exceed it.

    With ``k = floor(fpr * n)`` the threshold is the (k+1)-th largest clean score, so exactly
    ``k`` scores lie strictly above it when there are no ties (never more than ``k``).

    Example:
        >>> threshold_for_fpr(torch.arange(100.0), 0.05)
        94.0
    """
    fpr = check_probability(fpr, "fpr")
    scores = clean_scores.detach().flatten().double().cpu()
    if scores.numel() == 0:
        raise ValueError("cannot set a threshold from zero clean scores")
    if torch.isnan(scores).any():
        raise ValueError("clean scores contain NaN")
    k = math.floor(fpr * scores.numel() + 1e-9)
    if k >= scores.numel():
        return -math.inf
    ordered = scores.sort(descending=True).values
    return float(ordered[k])


class Detector(abc.ABC):
    """Base class of every detector; subclasses implement :meth:`_fit` and :meth:`_score`.

    Attributes:
        threshold: an image is flagged when its score is strictly greater.
        calibration: how the threshold was set (``{"fpr": ..., "n": ...}``) or None.
        meta: free-form JSON-serialisable description stored with the checkpoint.
    """

    #: Registry name (set on each registered subclass).
    name: ClassVar[str] = ""
    #: Whether :meth:`fit` needs adversarial examples.
    needs_adversarial: ClassVar[bool] = True
    #: Whether the detector needs the classifier (at fit and at score time).
    needs_model: ClassVar[bool] = False
    #: Whether the detector needs a learned masking model (``masker=``, SMD and SPD).
    needs_masker: ClassVar[bool] = False
    #: Whether :meth:`fit` also takes the clean images' true labels (``labels=``).
    takes_labels: ClassVar[bool] = False
    #: Threshold before any calibration.
    default_threshold: ClassVar[float] = 0.0

    def __init__(self) -> None:
        self.threshold: float = float(self.default_threshold)
        self.calibration: dict[str, Any] | None = None
        self.meta: dict[str, Any] = {}
        self.fitted = False

    # ------------------------------------------------------------------ public API
    def fit(self: D, clean: object, adversarial: object | None = None) -> D:
        """Learn from clean and adversarial images (tensors, datasets or batches); returns self."""
        x_clean = collect_images(clean, "clean")
        x_adv = None if adversarial is None else collect_images(adversarial, "adversarial")
        if self.needs_adversarial and x_adv is None:
            raise ValueError(f"{type(self).__name__}.fit needs adversarial images")
        if x_adv is not None and x_adv.shape[1:] != x_clean.shape[1:]:
            raise ValueError(
                f"adversarial images have shape {tuple(x_adv.shape[1:])}; clean images "
                f"{tuple(x_clean.shape[1:])}"
            )
        self._fit(x_clean, x_adv)
        self.fitted = True
        return self

    def score(self, images: object, *, batch_size: int = 256) -> torch.Tensor:
        """Scores (N,) on the CPU, float32; higher means more likely adversarial."""
        x = collect_images(images)
        self._require_fitted()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if x.shape[0] == 0:
            return torch.zeros(0)
        return map_batches(
            lambda b: self._score(b["image"]).detach().float().cpu(), {"image": x},
            batch_size=batch_size,
        )  # fmt: skip

    def detect(self, images: object, *, batch_size: int = 256) -> torch.Tensor:
        """(N,) bool: the score exceeds :attr:`threshold`."""
        return self.score(images, batch_size=batch_size) > self.threshold

    def calibrate(self, clean: object, *, fpr: float = 0.05) -> float:
        """Set :attr:`threshold` so that at most ``fpr`` of ``clean`` is flagged; returns it.

        Use clean images the detector was not fitted on: the rate then carries over to new
        clean data up to sampling error (about ``sqrt(fpr (1 - fpr) / n)``).
        """
        scores = self.score(clean)
        self.threshold = threshold_for_fpr(scores, fpr)
        self.calibration = {"fpr": float(fpr), "n": int(scores.numel())}
        return self.threshold

    # ------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def _fit(self, clean: torch.Tensor, adversarial: torch.Tensor | None) -> None:
        """Learn from validated images (adversarial is None for unsupervised detectors)."""

    @abc.abstractmethod
    def _score(self, images: torch.Tensor) -> torch.Tensor:
        """Scores (N,) for one validated batch."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON data) that rebuild an unfitted twin of this detector."""

    @abc.abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every learned array, as named tensors."""

    @abc.abstractmethod
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned (raise ValueError if it does not fit)."""

    # ------------------------------------------------------------------ helpers
    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
        """Write ``detector.safetensors`` + ``detector.json`` to ``directory`` (atomically)."""
        from foveal._version import __version__
        from foveal.io import write_described_tensors

        self._require_fitted()
        desc = {
            "kind": _KIND,
            "detector": self.name,
            "config": self.config(),
            "threshold": self.threshold,
            "calibration": self.calibration,
            "meta": {**self.meta, **(meta or {})},
            "foveal_version": __version__,
        }
        return write_described_tensors(
            directory, self.state_tensors(), desc, weights=WEIGHTS, meta=META
        )

    @classmethod
    def from_config(cls: type[D], config: dict[str, Any], model: nn.Module | None) -> D:
        """An unfitted detector from :meth:`config` output (and the classifier if needed)."""
        if cls.needs_model:
            return cls(model, **config)  # type: ignore[call-arg]
        return cls(**config)


def create_detector(name: str, model: nn.Module | None = None, **kwargs: Any) -> Detector:
    """A registered detector by name (``id``, ``jsd``, ``smd``, ``spd``, ``steganalysis``,
    ``odds``, ``squeeze``); ``model`` is the classifier for the detectors that need one."""
    cls = DETECTORS.get(name)
    if cls.needs_model:
        if model is None:
            raise ValueError(f"detector {name!r} needs the classifier (model=...)")
        return cls(model, **kwargs)  # type: ignore[call-arg]
    return cls(**kwargs)


def load_detector(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> Detector:
    """Load a detector written by :meth:`Detector.save`.

    Args:
        path: the directory (or its ``detector.safetensors``).
        model: the classifier, for detectors that need one (JSD, SMD, SPD, odds-are-odd,
            feature squeezing); it is not part of the checkpoint.
        map_location: device of the loaded tensors.

    Raises:
        ValueError: ``path`` is not a detector checkpoint (missing, pickle, corrupt) or the
            classifier is missing.
    """
    from foveal.io import read_described_tensors

    tensors, desc, weights = read_described_tensors(
        path,
        weights=WEIGHTS,
        meta=META,
        kind=_KIND,
        what="detector",
        hint="written by Detector.save or `foveal detect train`",
        map_location=map_location,
    )
    cls = DETECTORS.get(str(desc.get("detector")))
    config = desc.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{weights}: 'config' must be a mapping; got {type(config).__name__}")
    if cls.needs_model and model is None:
        raise ValueError(f"detector {cls.name!r} needs the classifier: load_detector(..., model=)")
    try:
        det = cls.from_config(config, model)
    except TypeError as exc:
        raise ValueError(f"{weights}: config does not fit {cls.__name__}: {exc}") from None
    det.load_state_tensors(tensors)
    threshold = desc.get("threshold")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise ValueError(f"{weights}: threshold must be a number; got {threshold!r}")
    det.threshold = float(threshold)
    det.calibration = desc.get("calibration")
    det.meta = dict(desc.get("meta") or {})
    det.fitted = True
    return det
