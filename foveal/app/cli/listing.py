"""``foveal list``: what is registered, one line of help each.

``foveal list`` prints every kind, grouped; ``foveal list KIND`` one kind. Each kind is a
registry (:class:`foveal.registry.Registry`) named in :data:`KINDS`; recipes also show their
settings with the defaults. The evaluation families (``foveal.app.evaluation.FAMILIES``) are
listed when that registry exists.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from typing import Any

import typer

from foveal.app.cli._app import app, fail

__all__ = ["KINDS", "format_value", "list_entries", "registry_of"]

#: Kind -> (module, attribute) of its registry, in the order ``foveal list`` prints them.
KINDS: dict[str, tuple[str, str]] = {
    "attacks": ("foveal.attacks", "ATTACKS"),
    "objectives": ("foveal.attacks", "OBJECTIVES"),
    "threats": ("foveal.threats", "BUILDERS"),
    "saliency": ("foveal.saliency", "METHODS"),
    "maskers": ("foveal.saliency", "MASKERS"),
    "recipes": ("foveal.defenses", "RECIPES"),
    "transforms": ("foveal.defenses", "TRANSFORMS"),
    "detectors": ("foveal.detectors", "DETECTORS"),
    "datasets": ("foveal.data", "DATASETS"),
    "models": ("foveal.models", "ARCHITECTURES"),
    "reproductions": ("foveal.app.reproductions", "EXPERIMENTS"),
    "families": ("foveal.app.evaluation", "FAMILIES"),
}


def registry_of(kind: str) -> Any:
    """The registry of ``kind``, or None when its module does not provide it (yet)."""
    module, attribute = KINDS[kind]
    try:
        return getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        return None


def format_value(value: Any) -> str:
    """A setting's value as one short token: ``k/255`` budgets as such, floats with ``g``.

    Example:
        >>> format_value(8 / 255), format_value(0.2), format_value(None), format_value((0.5, 1))
        ('8/255', '0.2', 'None', '(0.5,1)')
    """
    if isinstance(value, float) and 0 < value < 1 and round(value, 4) != value:
        k = value * 255
        if abs(k - round(k)) < 1e-9:
            return f"{round(k)}/255"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(format_value(v) for v in value) + ")"
    return str(value)


def _recipe_settings(cls: Any) -> str:
    fields = {k: f for k, f in cls.model_fields.items() if k != "method"}
    return " ".join(f"{k}={format_value(f.default)}" for k, f in fields.items())


def list_entries(kind: str) -> list[tuple[str, str]] | None:
    """``(name, help)`` of every entry of ``kind`` (None: the kind is not available)."""
    registry = registry_of(kind)
    if registry is None:
        return None
    if hasattr(registry, "names") and hasattr(registry, "help"):
        rows = [(name, registry.help(name)) for name in registry.names()]
    elif isinstance(registry, Mapping):
        rows = [(str(name), _first_line(value)) for name, value in registry.items()]
    else:
        rows = [(str(name), "") for name in registry]
    if kind == "recipes":
        rows = [(name, f"{text}  {_recipe_settings(registry.get(name))}".rstrip())
                for name, text in rows]  # fmt: skip
    return rows


def _first_line(value: object) -> str:
    text = getattr(value, "description", None) or getattr(value, "__doc__", None) or ""
    return str(text).strip().split("\n")[0]


def _lines(rows: list[tuple[str, str]], indent: str = "") -> list[str]:
    width = max((len(name) for name, _ in rows), default=0)
    return [f"{indent}{name:<{width}}  {text}".rstrip() for name, text in rows]


@app.command("list")
def list_command(
    kind: str = typer.Argument(None, help=f"one of: {', '.join(KINDS)} [default: all]"),
) -> None:
    """List what is registered (attacks, threats, saliency methods, recipes, detectors, ...).

    Each name is what the other commands take (`--attack`, `--threat`, `--method`,
    `--detector`, `--data`, `--arch`, ...); recipes also show their settings and defaults.
    """
    if kind is not None:
        key = kind.lower()
        if key not in KINDS:
            fail(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        rows = list_entries(key)
        if rows is None:
            module, attribute = KINDS[key]
            fail(f"no {key} are registered here ({module}.{attribute} does not exist)")
            return
        for line in _lines(rows):
            typer.echo(line)
        return
    first = True
    for key in KINDS:
        rows = list_entries(key)
        if rows is None:
            continue
        if not first:
            typer.echo("")
        first = False
        typer.echo(f"{key}:")
        for line in _lines(rows, "  "):
            typer.echo(line)
