"""``foveal datasets``, ``foveal models`` and ``foveal info``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from foveal.app.cli._app import app, fail


@app.command("datasets")
def datasets_command() -> None:
    """List the datasets foveal can load, with their sizes (also `foveal list datasets`)."""
    from foveal.data import DATASETS

    for name in DATASETS:
        info = DATASETS.get(name)
        where = "built-in" if info.builtin else "local root (--data-root)"
        masks = "masks" if info.masks else "no masks"
        typer.echo(f"{name:<12} {where:<26} {masks:<9} {info.sizes}")
        typer.echo(f"{'':<12} {info.description}")


@app.command("models")
def models_command() -> None:
    """List the registered architectures (also `foveal list models`)."""
    from foveal.models import ARCHITECTURES

    for name in ARCHITECTURES:
        typer.echo(f"{name:<12} {ARCHITECTURES.help(name)}")


@app.command("info")
def info_command(checkpoint: Path = typer.Argument(..., help="checkpoint directory")) -> None:
    """Show what a checkpoint holds (architecture, data, recipe, metrics)."""
    from foveal.models import CheckpointError, read_meta

    try:
        meta = read_meta(checkpoint)
    except CheckpointError as exc:
        fail(str(exc))
        return
    typer.echo(json.dumps(meta, indent=2, sort_keys=True))
