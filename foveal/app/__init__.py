"""The application layer: what foveal builds on top of the library.

- :mod:`foveal.app.evaluation` — ``foveal evaluate``: the evaluation suite, its families of
  cells, the sanity checks and the HTML report;
- :mod:`foveal.app.reproductions` — ``foveal reproduce``: the papers' key claims re-run at CPU
  scale, and the detectors experiment;
- :mod:`foveal.app.cache` — the one resumable cell cache both of them store results in;
- :mod:`foveal.app.zoo` — the reference models, trained on first use and cached;
- :mod:`foveal.app.jobs` — validated training jobs (``foveal train``);
- :mod:`foveal.app.cli` — the command line.

The library (``foveal`` and its core subpackages) never imports this package; this package
only calls the library. ``evaluate``, ``Report`` and ``reproduce`` are importable from here
directly (loaded on first use)::

    from foveal.app import evaluate
    report = evaluate(preset="quick", out="runs/quick")
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names of the application layer and the module each comes from (loaded lazily).
_EXPORTS = {
    "evaluate": "foveal.app.evaluation",
    "Report": "foveal.app.evaluation",
    "reproduce": "foveal.app.reproductions",
    "pretrained": "foveal.app.zoo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'foveal.app' has no attribute {name!r}")
