"""Atomic file writes and JSON-lines logs: results and checkpoints are never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["append_jsonl", "atomic_path", "atomic_write_text", "read_jsonl"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON record as a single line, flushed and fsynced.

    A line is written with one ``write`` call in append mode, so a crash leaves either the whole
    line or a truncated last line, which :func:`read_jsonl` skips.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    # A crash may have left a truncated last line without its newline: end it first, so the
    # new record stays on a line of its own (read_jsonl then skips only the broken line).
    if target.exists() and target.stat().st_size > 0:
        with open(target, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file, skipping lines truncated by a crash (they lack the closing brace)."""
    target = Path(path)
    if not target.exists():
        return []
    records = []
    lines = target.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # A line cut short by a crash: skipped (the record it held was never complete).
            if i == len(lines) - 1 or not line.rstrip().endswith("}"):
                continue
            raise ValueError(f"{target}: line {i + 1} is not valid JSON") from None
    return records
