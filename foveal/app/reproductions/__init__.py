"""``foveal reproduce``: the five papers' key claims re-run at CPU scale, with a claims table.

Each experiment (``dual``, ``sai``, ``detect``, ``sip``, ``perceptual``) is a declarative spec —
parameters per scale and the claims it checks — run on the built-in data with reference models
from :mod:`foveal.app.zoo`. Results are cached cell by cell (``results.jsonl``), so a run resumes
where it stopped; the page ``docs/reproductions/NAME.md`` holds the claims table (claim, the
paper's figure, ours, holds?) and the figures.

Example:
    >>> from foveal.app.reproductions import EXPERIMENTS
    >>> sorted(EXPERIMENTS.names())
    ['detect', 'detectors', 'dual', 'perceptual', 'sai', 'sip']
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from foveal.app.reproductions.base import (
    EXPERIMENTS,
    Claim,
    Context,
    Experiment,
    Reproduction,
    claims_json,
    render_index,
    render_page,
    write_page,
)

# Importing the experiment modules registers them.
from foveal.app.reproductions import dual  # noqa: F401  isort: skip
from foveal.app.reproductions import sai  # noqa: F401  isort: skip
from foveal.app.reproductions import detect  # noqa: F401  isort: skip
from foveal.app.reproductions import sip  # noqa: F401  isort: skip
from foveal.app.reproductions import perceptual  # noqa: F401  isort: skip
from foveal.app.reproductions import detectors  # noqa: F401  isort: skip

__all__ = ["EXPERIMENTS", "Claim", "Context", "Experiment", "Reproduction", "reproduce"]


def reproduce(
    name: str,
    *,
    scale: str = "default",
    out: str | Path | None = None,
    docs: str | Path | None = None,
    data_root: str | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Reproduction:
    """Run reproduction ``name`` and write its page.

    Args:
        name: one of ``EXPERIMENTS`` (``foveal reproduce --list``).
        scale: ``"default"`` (the documented run) or ``"smoke"`` (seconds; for tests).
        out: directory of the cached results (default ``runs/reproduce/NAME-SCALE``).
        docs: directory of the page ``NAME.md``, its figures and the claims index (default:
            the results directory ``out``; the project's pages are re-rendered with
            ``docs="docs/reproductions"``). Nothing is written outside ``out`` unless asked.
        data_root: root of real datasets, for experiments that can use them.
        progress: progress bars while models train.
        log: called with one line per step (e.g. ``typer.echo``).

    Returns:
        A :class:`Reproduction` with the claims.
    """
    experiment = EXPERIMENTS.get(name)
    if scale not in experiment.scales:
        raise ValueError(
            f"scale must be one of {sorted(experiment.scales)} for {name!r}; got {scale!r}"
        )
    out_dir = Path(out) if out is not None else Path("runs") / "reproduce" / f"{name}-{scale}"
    docs_dir = Path(docs) if docs is not None else out_dir
    figures_dir = docs_dir / name
    start = time.perf_counter()
    ctx = Context(
        experiment=experiment,
        scale=scale,
        params=dict(experiment.scales[scale]),
        out_dir=out_dir,
        figures_dir=figures_dir,
        data_root=data_root,
        progress=progress,
        log=log or (lambda line: None),
    )
    claims = experiment.run(ctx)
    seconds = time.perf_counter() - start
    compute, training = ctx.compute_seconds()
    page = docs_dir / f"{name}.md"
    repro = Reproduction(
        experiment=experiment,
        scale=scale,
        claims=claims,
        seconds=seconds,
        page=page,
        out_dir=out_dir,
        cells_run=ctx.cells_run,
        cells_cached=ctx.cells_cached,
        compute_seconds=compute,
        training_seconds=training,
        machine=ctx.machine,
    )
    rel = os.path.relpath(figures_dir, page.parent)
    write_page(page, render_page(repro, ctx.sections, rel))
    if experiment.claims:  # a reproduction: its claims join the index of every claim
        write_page(page.with_suffix(".json"), json.dumps(claims_json(repro), indent=2) + "\n")
        summaries = [
            json.loads(p.read_text(encoding="utf-8")) for p in sorted(docs_dir.glob("*.json"))
        ]
        write_page(docs_dir / "README.md", render_index([s for s in summaries if "claims" in s]))
    return repro
