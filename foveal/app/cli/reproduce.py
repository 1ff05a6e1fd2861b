"""``foveal reproduce``: re-run a paper's key claims at CPU scale and write its page."""

from __future__ import annotations

from pathlib import Path

import typer

from foveal.app.cli._app import app, fail


@app.command("reproduce")
def reproduce_command(
    name: str = typer.Argument(None, help="reproduction to run (see --list)"),
    list_: bool = typer.Option(False, "--list", help="list the reproductions and exit"),
    smoke: bool = typer.Option(False, help="seconds-long smoke scale (for tests; no numbers)"),
    out: Path = typer.Option(None, help="results directory (default runs/reproduce/NAME-SCALE)"),
    docs: Path = typer.Option(
        None,
        help="directory of the page NAME.md, its figures and the claims index "
        "[default: the results directory]; the project's pages: --docs docs/reproductions",
    ),
    data_root: Path = typer.Option(None, help="local root of a real dataset, where supported"),
) -> None:
    """Re-run one paper's key experiments on the built-in data; print and write a claims table.

    Results are cached cell by cell: re-running resumes where a run stopped.
    """
    from foveal.app.reproductions import EXPERIMENTS, reproduce
    from foveal.app.reproductions.base import holds_mark

    if list_ or name is None:
        for key in EXPERIMENTS.names():
            exp = EXPERIMENTS.get(key)
            typer.echo(f"{key:<12} {EXPERIMENTS.help(key)} ({exp.cite})")
        if name is None and not list_:
            typer.echo("\nrun one with: foveal reproduce NAME")
        return
    try:
        EXPERIMENTS.get(name)
    except ValueError as exc:
        fail(str(exc))
    try:
        result = reproduce(
            name,
            scale="smoke" if smoke else "default",
            out=out,
            docs=docs,
            data_root=None if data_root is None else str(data_root),
            progress=True,
            log=typer.echo,
        )
    except KeyboardInterrupt:
        typer.echo("interrupted; finished cells are saved, re-run to resume", err=True)
        raise typer.Exit(130) from None
    typer.echo("")
    for c in result.claims:
        typer.echo(f"({c.key}) [{holds_mark(c.holds).strip('*')}] {c.text}")
        typer.echo(f"    ours: {c.ours}")
    typer.echo(f"\n{result.seconds / 60:.1f} min; results in {result.out_dir}")
    if result.page is not None:
        typer.echo(f"page: {result.page}")
