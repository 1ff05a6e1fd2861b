"""Building a training recipe by name: validated settings, then the recipe.

Importing this module registers every recipe of :data:`foveal.training.RECIPES` (``standard``
from :mod:`foveal.training`, the adversarial recipes of :mod:`foveal.defenses.adversarial`,
``gaussian`` from :mod:`foveal.defenses.smoothing`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from foveal._validation import format_validation_error
from foveal.defenses import adversarial as _adversarial  # noqa: F401  (registers its recipes)
from foveal.defenses import smoothing as _smoothing  # noqa: F401  (registers its recipe)
from foveal.training import RECIPES, Recipe, RecipeSettings

__all__ = ["make_recipe", "recipe_settings"]


def recipe_settings(method: str, values: Mapping[str, Any] | None = None) -> RecipeSettings:
    """Validate ``values`` against the settings class of recipe ``method``.

    Errors name the setting and the value (``ValueError``).

    Example:
        >>> recipe_settings("standard")
        StandardSettings(method='standard')
        >>> recipe_settings("standard", {"eps": 0.1})
        Traceback (most recent call last):
        ...
        ValueError: invalid settings of recipe 'standard': method 'standard' takes no setting 'eps' (it has no settings)
    """  # noqa: E501
    cls = RECIPES.get(method)
    name = cls.model_fields["method"].default
    try:
        return cls.model_validate({**(values or {}), "method": name})
    except ValidationError as exc:
        raise ValueError(
            f"invalid settings of recipe {name!r}: {format_validation_error(exc)}"
        ) from None


def make_recipe(name: str, *, epochs: int | None = None, **kwargs: Any) -> Recipe:
    """Build the registered recipe ``name`` (``foveal list recipes``) from keyword settings.

    Plain values (numbers, fractions such as ``"8/255"``, strings, booleans) are the recipe's
    settings, validated by its settings class (``RECIPES.get(name)``); functions and models
    (``masker=`` for ``dual`` and ``sip-h``, the robust ``reference=`` model of ``sip-s``) go to
    its builder. ``epochs`` is the run's length (``fat`` scales its tau schedule to it).

    Example:
        >>> recipe = make_recipe("trades", eps="4/255", steps=5)
        >>> recipe.eps == 4 / 255, recipe.beta
        (True, 6.0)
        >>> make_recipe("madry", beta=6)
        Traceback (most recent call last):
        ...
        ValueError: invalid settings of recipe 'madry': method 'madry' takes no setting 'beta' (its settings: eps, norm, steps, alpha, fast, eval_n, eval_steps)
    """  # noqa: E501
    objects = {k: v for k, v in kwargs.items() if callable(v)}
    settings = recipe_settings(name, {k: v for k, v in kwargs.items() if k not in objects})
    accepted = inspect.signature(settings.build).parameters
    unknown = [k for k in objects if k not in accepted or k == "epochs"]
    if unknown:
        raise ValueError(
            f"recipe {settings.method!r} takes no {', '.join(f'{k}=' for k in unknown)} object"
        )
    return settings.build(epochs=epochs, **objects)
