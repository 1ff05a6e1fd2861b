"""foveal: saliency-aware adversarial machine learning on images.

Build the masks, run the attacks, train the defenses and detectors, and get one report.
"""

from __future__ import annotations

__version__ = "0.1.0"

from foveal import attacks, data, models, threats
from foveal.evaluate import Report, evaluate

__all__ = ["Report", "__version__", "attacks", "data", "evaluate", "models", "threats"]
