"""The Typer application every command module registers on, and helpers the commands share."""

from __future__ import annotations

from typing import Any

import typer

app = typer.Typer(
    name="foveal",
    help="Saliency-aware adversarial machine learning on images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error to stderr and exit (no traceback for user errors)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def parse_param(text: str) -> tuple[str, Any]:
    """``"mu=0.9"`` -> ``("mu", 0.9)``; values: true/false/none, integers, fractions, strings.

    Example:
        >>> parse_param("eps=8/255")[1] == 8 / 255, parse_param("norm=l2"), parse_param("fast=true")
        (True, ('norm', 'l2'), ('fast', True))
    """
    from foveal._validation import parse_fraction

    if "=" not in text:
        raise ValueError(f"--param must look like KEY=VALUE; got {text!r}")
    key, raw = (s.strip() for s in text.split("=", 1))
    key = key.replace("-", "_")
    if not key.isidentifier():
        raise ValueError(f"--param key must be a name; got {key!r}")
    low = raw.lower()
    if low in ("true", "false"):
        return key, low == "true"
    if low in ("none", "null"):
        return key, None
    try:
        return key, int(raw)
    except ValueError:
        pass
    try:
        return key, parse_fraction(raw, key)
    except ValueError:
        return key, raw
