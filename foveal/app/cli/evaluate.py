"""``foveal evaluate``: the unsuspicious-robustness suite and its report.

Examples::

    foveal evaluate                                   # built-in shapes models, default grid
    foveal evaluate --quick --out runs/quick          # a smoke run (about 2 minutes)
    foveal evaluate --model runs/std --model runs/madry --data shapes --out runs/eval
    foveal evaluate --model runs/madry --config eval.yaml --surrogate runs/std --full

Outputs in ``--out``: ``results.jsonl`` (one record per finished cell; re-running the same
command resumes), ``suite.json``, ``examples/``, ``figures/*.png``, ``report.html`` (one
self-contained page) and ``summary.json``. The config schema and the sanity checks are
described in docs/evaluate.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from foveal.app.cli._app import app, fail


@app.command("evaluate")
def evaluate_command(
    model: list[Path] = typer.Option(
        [], "--model", help="checkpoint directory (repeatable) [default: built-in shapes pair]"
    ),
    data: str = typer.Option(None, help="dataset name [default: shapes, or the config's]"),
    config: Path = typer.Option(None, help="YAML/JSON/TOML file overriding the preset"),
    out: Path = typer.Option(Path("runs/evaluate"), help="output directory"),
    quick: bool = typer.Option(False, "--quick", help="smoke-test preset (about 2 minutes)"),
    full: bool = typer.Option(False, "--full", help="larger preset, with AutoAttack"),
    surrogate: list[Path] = typer.Option(
        [], "--surrogate", help="surrogate checkpoint for the transfer matrix (repeatable)"
    ),
    detector: list[Path] = typer.Option(
        [], "--detector", help="saved detector directory (repeatable; needs foveal.detectors)"
    ),
    n: int = typer.Option(None, help="number of evaluation images [default: the preset's]"),
    seed: int = typer.Option(None, help="seed of the attacks [default: 0]"),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda"),
) -> None:
    """Run the unsuspicious-robustness suite; write results.jsonl, report.html, summary.json."""
    from foveal.app.evaluation import build_config, evaluate, load_config_file
    from foveal.app.jobs import format_validation_error
    from foveal.models import CheckpointError

    if quick and full:
        fail("--quick and --full exclude each other")
        return
    try:
        raw: dict[str, Any] = load_config_file(config) if config else {}
        for key, value in (("data", data), ("n", n), ("seed", seed)):
            if value is not None:
                raw[key] = value
        cfg = build_config(raw, preset_name="quick" if quick else "full" if full else None)
    except ValidationError as exc:
        fail(f"invalid settings: {format_validation_error(exc)}")
        return
    except ValueError as exc:
        fail(str(exc))
        return
    start = time.perf_counter()
    try:
        report = evaluate(
            [str(m) for m in model] or None,
            config=cfg,
            out=out,
            surrogates=[str(s) for s in surrogate] or None,
            detectors=[str(d) for d in detector] or None,
            device=device,
            progress=True,
        )
    except KeyboardInterrupt:
        typer.echo("interrupted; what was finished is saved: run the same command to resume")
        raise typer.Exit(130) from None
    except (CheckpointError, ValueError, TypeError) as exc:
        fail(str(exc))
        return
    elapsed = time.perf_counter() - start
    stats = report.stats
    done = len(report.cells) - len(report.missing)
    if report.interrupted:
        typer.echo(
            f"interrupted: {done} of {len(report.cells)} cells are saved in "
            f"{out / 'results.jsonl'}; run the same command to resume"
        )
        raise typer.Exit(130)
    typer.echo("")
    typer.echo(report.table())
    typer.echo("")
    if report.warnings:
        typer.secho(f"{len(report.warnings)} sanity warning(s):", fg=typer.colors.YELLOW)
        for w in report.warnings:
            typer.echo(f"  - {w}")
    else:
        typer.echo("sanity checks: all passed")
    computed = len(stats.computed) if stats else 0
    typer.echo(
        f"{computed} cells computed, {done - computed} reused; {elapsed:.0f} s -> "
        f"{out / 'report.html'}"
    )
