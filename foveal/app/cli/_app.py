"""The Typer application every command module registers on."""

from __future__ import annotations

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
