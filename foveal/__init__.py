"""foveal: saliency-aware adversarial machine learning on images.

The library: perturbation sets (:mod:`foveal.threats`), attacks (:mod:`foveal.attacks`), saliency
methods and masks (:mod:`foveal.saliency`), defenses and training recipes
(:mod:`foveal.defenses`, :mod:`foveal.training`), detectors (:mod:`foveal.detectors`), data
(:mod:`foveal.data`), models (:mod:`foveal.models`), metrics and file I/O. ``import foveal``
loads the core only; the other core subpackages load on first access (``foveal.detectors``).

The applications built on it — the evaluation report, the paper reproductions, the reference
models and the command line — live in :mod:`foveal.app`, which the library never imports::

    from foveal.app import evaluate, reproduce
"""

from __future__ import annotations

import importlib
from typing import Any

from foveal import attacks, data, models, saliency, threats
from foveal._version import __version__

#: Core subpackages loaded on first attribute access (they pull in heavier dependencies).
_LAZY = ("batching", "defenses", "detectors", "io", "metrics", "training")

__all__ = ["__version__", "attacks", "data", "models", "saliency", "threats", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"foveal.{name}")
    raise AttributeError(f"module 'foveal' has no attribute {name!r}")
