"""Defenses: input transforms (gray-box), randomized smoothing, and training recipes.

Importing this package registers every training recipe in :data:`RECIPES` (``standard`` from
:mod:`foveal.training`, the adversarial recipes, ``gaussian``).
"""

from __future__ import annotations

from foveal.defenses.recipes import make_recipe, recipe_settings
from foveal.defenses.smoothing import ABSTAIN, Certificate, GaussianNoiseRecipe, Smooth
from foveal.defenses.transforms import TRANSFORMS, InputTransform, make_transform
from foveal.training import RECIPES

__all__ = [
    "ABSTAIN",
    "RECIPES",
    "TRANSFORMS",
    "Certificate",
    "GaussianNoiseRecipe",
    "InputTransform",
    "Smooth",
    "make_recipe",
    "make_transform",
    "recipe_settings",
]
