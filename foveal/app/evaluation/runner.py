"""The cell runner: compute every unfinished cell and append it atomically to ``results.jsonl``.

Guarantees:

- a cell's record is appended as one fsynced line only once the cell is complete (and after its
  example images are written), so an interruption (Ctrl-C, a kill, a crash) loses at most the
  cell that was running; :func:`foveal.io.read_jsonl` skips a truncated last line;
- re-running with the same settings skips every cell whose key is already in
  ``results.jsonl`` (keys digest the model, data, settings and seed: see
  :func:`foveal.app.evaluation.suite.cell_key`);
- each cell re-seeds torch and its attacks from the run's seed, so the records of an interrupted
  and resumed run equal those of an uninterrupted run (up to the timing fields ``seconds`` and
  ``finished``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from foveal.app.evaluation.cells import CellContext, compute_cell
from foveal.app.evaluation.suite import Cell
from foveal.io import append_jsonl, read_jsonl

__all__ = ["RESULTS_FILE", "TIMING_FIELDS", "RunStats", "read_results", "run_cells"]

RESULTS_FILE = "results.jsonl"

#: Record fields that legitimately differ between two runs of the same cell.
TIMING_FIELDS = ("seconds", "finished")


@dataclass
class RunStats:
    """What :func:`run_cells` did."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False


def read_results(out: str | Path) -> dict[str, dict[str, Any]]:
    """Records of ``out/results.jsonl`` by key (a later record of a key replaces an earlier)."""
    return {r["key"]: r for r in read_jsonl(Path(out) / RESULTS_FILE) if "key" in r}


def run_cells(
    cells: Sequence[Cell],
    keys: Sequence[str],
    ctx: CellContext,
    *,
    progress: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> RunStats:
    """Compute the cells of ``keys`` that ``ctx.out/results.jsonl`` does not hold yet.

    Ctrl-C (KeyboardInterrupt) stops after saving every finished cell and returns with
    ``interrupted=True``; the running cell is lost and recomputed by the next run.
    """
    import foveal

    path = ctx.out / RESULTS_FILE
    done = set(read_results(ctx.out))
    stats = RunStats()
    todo = [(c, k) for c, k in zip(cells, keys, strict=True) if k not in done]
    stats.skipped = [k for k in keys if k in done]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(keys),
            initial=len(keys) - len(todo),
            desc="evaluate",
            unit="cell",
            dynamic_ncols=True,
        )
    try:
        for cell, key in todo:
            if bar is not None:
                bar.set_postfix_str(f"{cell.model}: {cell.label}"[:60])
            start = time.perf_counter()
            result = compute_cell(cell, key, ctx)
            record: dict[str, Any] = {
                "key": key,
                **cell.describe(),
                "seed": ctx.seed,
                "n": int(ctx.images.shape[0]),
                "foveal_version": foveal.__version__,
                **result,
                "seconds": round(time.perf_counter() - start, 3),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            append_jsonl(path, record)
            stats.computed.append(key)
            done.add(key)
            if on_record is not None:
                on_record(record)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        if bar is not None:
            bar.close()
    return stats
