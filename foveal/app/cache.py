"""The one resumable cell cache: finished results in ``results.jsonl``, one record per line.

``foveal evaluate`` and ``foveal reproduce`` (and the detectors experiment) store every finished
unit of work — a *cell* — here, under a key that digests everything the result depends on. A
cell is computed once: a later run with the same key reads it back, so an interrupted run
resumes where it stopped and a finished one re-renders in seconds.

Guarantees:

- a record is appended as one fsynced line (:func:`foveal.io.append_jsonl`) only once its cell
  is complete, so an interruption (Ctrl-C, a kill, a crash) loses at most the running cell;
- a line truncated by a crash is dropped when the cache is opened, and the file is rewritten
  atomically without it, so strict JSON-lines readers never meet the fragment;
- a later record of a key replaces an earlier one.

Written here: a few lines over :mod:`foveal.io`; no library keeps resumable JSON-lines caches
with these guarantees.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from foveal.io import append_jsonl, atomic_write_text

__all__ = ["RESULTS_FILE", "CellCache"]

RESULTS_FILE = "results.jsonl"


def _read_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Records of ``path`` and whether a broken (crash-truncated) line was dropped."""
    if not path.exists():
        return [], False
    records: list[dict[str, Any]] = []
    broken = False
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 or not line.rstrip().endswith("}"):
                broken = True  # cut short by a crash: its cell was never complete
                continue
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
        if not isinstance(record, dict) or "key" not in record:
            raise ValueError(f"{path}: line {i + 1} is not a cell record (no 'key')")
        records.append(record)
    return records, broken


class CellCache:
    """Finished cells of one output directory (see the module docstring).

    Args:
        directory: the output directory; the cache is ``directory / filename``.
        filename: the JSON-lines file (default ``results.jsonl``).

    Example:
        >>> import tempfile
        >>> cache = CellCache(tempfile.mkdtemp())
        >>> cache.cell("square/3", lambda: 3 * 3)
        9
        >>> cache.cell("square/3", lambda: 1 / 0), len(cache), cache.computed
        (9, 1, 1)
    """

    def __init__(self, directory: str | os.PathLike[str], filename: str = RESULTS_FILE) -> None:
        self.directory = Path(directory)
        self.path = self.directory / filename
        records, broken = _read_lines(self.path)
        if broken:  # rewrite without the fragment, atomically
            atomic_write_text(
                self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
            )
        self._records: dict[str, dict[str, Any]] = {}
        for record in records:
            self._records[str(record["key"])] = record
        #: Cells computed (``computed``) and read back (``reused``) through :meth:`cell`.
        self.computed = 0
        self.reused = 0

    # ------------------------------------------------------------------ access
    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key`` (None if the cell is not finished)."""
        return self._records.get(key)

    def records(self) -> dict[str, dict[str, Any]]:
        """Every record by key (a copy of the index; the records themselves are shared)."""
        return dict(self._records)

    # ------------------------------------------------------------------ writing
    def put(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` (a JSON-ready dict with a ``key``) and return it as stored."""
        if "key" not in record:
            raise ValueError(f"a cell record needs a 'key'; got keys {sorted(record)}")
        stored = json.loads(json.dumps(record))  # what a later run will read back
        append_jsonl(self.path, stored)
        self._records[str(stored["key"])] = stored
        return stored

    def cell(
        self,
        key: str,
        fn: Callable[[], Any],
        *,
        extra: dict[str, Any] | None = None,
        before: Callable[[], None] | None = None,
    ) -> Any:
        """``fn()``'s JSON value, computed once per ``key``: the cached value if present.

        Stores ``{"key", "value", "seconds", **extra}``. ``before`` runs just before a cell is
        computed (e.g. to re-seed torch or log a line); it does not run for a cached cell.
        """
        found = self._records.get(key)
        if found is not None:
            self.reused += 1
            return found["value"]
        if before is not None:
            before()
        start = time.perf_counter()
        value = fn()
        record = {
            "key": key,
            "value": value,
            "seconds": round(time.perf_counter() - start, 3),
            **(extra or {}),
        }
        self.computed += 1
        return self.put(record)["value"]
