"""Defenses: input transforms (gray-box), randomized smoothing, and training recipes."""

from __future__ import annotations

from foveal.defenses.smoothing import ABSTAIN, Certificate, GaussianNoiseRecipe, Smooth
from foveal.defenses.transforms import TRANSFORMS, InputTransform, make_transform

__all__ = [
    "ABSTAIN",
    "TRANSFORMS",
    "Certificate",
    "GaussianNoiseRecipe",
    "InputTransform",
    "Smooth",
    "make_transform",
]
