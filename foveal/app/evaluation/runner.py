"""The cell runner: compute every unfinished cell and store it in ``results.jsonl``.

Records are kept by :class:`foveal.app.cache.CellCache`: a record is appended as one fsynced
line only once its cell is complete (after its example images), so an interruption loses at most
the running cell; a finished key (:func:`~foveal.app.evaluation.family.cell_key`) is never
recomputed. Each cell re-seeds torch and its attacks from the run's seed, so the records of an
interrupted and resumed run equal those of an uninterrupted run (up to :data:`TIMING_FIELDS`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch

from foveal.app.cache import RESULTS_FILE, CellCache
from foveal.app.evaluation.cells import CellContext
from foveal.app.evaluation.family import Cell, family
from foveal.app.evaluation.results import Record

__all__ = ["RESULTS_FILE", "TIMING_FIELDS", "RunStats", "compute_cell", "run_cells"]

#: Record fields that legitimately differ between two runs of the same cell.
TIMING_FIELDS = ("seconds", "finished")


@dataclass
class RunStats:
    """What :func:`run_cells` did."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False


def compute_cell(cell: Cell, key: str, ctx: CellContext) -> Record:
    """``cell``'s record (without the timing fields), computed by its family."""
    torch.manual_seed(ctx.seed)
    return family(cell.family).compute(ctx, cell, key)


def run_cells(
    cells: Sequence[Cell], keys: Sequence[str], ctx: CellContext, *, progress: bool = False
) -> RunStats:
    """Compute the cells of ``keys`` that ``ctx.out/results.jsonl`` does not hold yet.

    Ctrl-C (KeyboardInterrupt) stops after saving every finished cell and returns with
    ``interrupted=True``; the running cell is lost and recomputed by the next run.
    """
    cache = CellCache(ctx.out)
    todo = [(c, k) for c, k in zip(cells, keys, strict=True) if k not in cache]
    stats = RunStats(skipped=[k for k in keys if k in cache])
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
            record = compute_cell(cell, key, ctx)
            record.seconds = round(time.perf_counter() - start, 3)
            record.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
            cache.put(record.to_json())
            stats.computed.append(key)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        if bar is not None:
            bar.close()
    return stats
