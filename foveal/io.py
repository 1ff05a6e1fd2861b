"""Atomic file writes and JSON-lines logs: results and checkpoints are never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "DirectoryLock",
    "DirectoryLocked",
    "append_jsonl",
    "atomic_path",
    "atomic_write_text",
    "read_described_tensors",
    "read_jsonl",
    "remove_stale_temporaries",
    "write_described_tensors",
]

#: Header key of the JSON description stored inside foveal's safetensors files.
HEADER_KEY = "foveal"


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


#: The process's umask, read once (reading it means setting it, which is not thread-safe).
_UMASK = _umask()


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename in it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path`` atomically.

    The file is flushed to disk before the rename and the directory after it, so after a crash
    ``path`` holds either the old or the new content, never a mix. The new file gets the
    permissions an ordinary ``open`` would give it (``0o666`` minus the umask).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, target)
        fsync_directory(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` leaves when a process is killed mid-write.

    Call it only while holding the directory's :class:`DirectoryLock` (no other writer then has
    a temporary file in flight). Returns the files removed.
    """
    removed = []
    folder = Path(directory)
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink()
                removed.append(tmp)
    return removed


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


def write_described_tensors(
    directory: str | os.PathLike[str],
    tensors: dict[str, Any],
    description: dict[str, Any],
    *,
    weights: str,
    meta: str,
) -> Path:
    """Write ``tensors`` to ``directory/weights`` (safetensors) with ``description`` (JSON) in
    its header and beside it in ``directory/meta``; both atomically. Returns ``directory``.

    The header copy makes the weights file self-describing (one rename replaces a checkpoint);
    the JSON file is for people and tools that do not read safetensors headers.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(description, indent=2, sort_keys=True, default=str)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_path(out / weights) as tmp:
        save_file(state, str(tmp), metadata={HEADER_KEY: text})
    atomic_write_text(out / meta, text + "\n")
    return out


def read_described_tensors(
    path: str | os.PathLike[str],
    *,
    weights: str,
    meta: str,
    kind: str,
    what: str,
    hint: str,
    map_location: Any = "cpu",
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Read a file written by :func:`write_described_tensors`: ``(tensors, description, file)``
    with ``file`` the weights file read (for error messages).

    ``path`` is the directory or its weights file. Only safetensors is read (never a pickle).

    Raises:
        ValueError: missing file, not safetensors, no valid description in the header, or a
            description whose ``kind`` is not ``kind``. Messages name the file, ``what`` it
            should be, and ``hint`` (where such files come from).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    p = Path(path)
    file = p / weights if p.is_dir() else p
    if not file.exists() or file.suffix != ".safetensors":
        raise ValueError(
            f"no {what} at {path!s}: expected a directory containing {weights} and {meta} ({hint})"
        )
    try:
        with safe_open(str(file), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(file), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{file}: not a readable safetensors file ({exc})") from None
    try:
        desc = json.loads(header[HEADER_KEY])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{file}: no valid '{HEADER_KEY}' description in the header") from None
    if not isinstance(desc, dict) or desc.get("kind") != kind:
        found = desc.get("kind") if isinstance(desc, dict) else None
        raise ValueError(f"{file}: not a {what} checkpoint (kind={found!r})")
    return tensors, desc, file


class DirectoryLocked(RuntimeError):
    """Another process holds the output directory (the message names it and its PID)."""


class DirectoryLock:
    """An exclusive lock on an output directory, held for a ``with`` block.

    Two runs never write into one directory at the same time: the second fails at once with
    :class:`DirectoryLocked`, naming the holder's PID and what it is doing. The lock is an
    advisory ``flock`` on ``directory/.foveal.lock`` (released by the operating system when the
    holder exits or is killed, so a crash never leaves a stale lock); the file records the
    holder for the message. Within one process the lock is re-entrant: a function that locks
    a directory its caller holds already (``foveal train`` and :func:`foveal.training.fit`)
    shares the caller's lock.

    Args:
        directory: the output directory (created if missing).
        purpose: what the holder does (e.g. ``"foveal train"``), shown to a second run.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> import subprocess, sys
        >>> code = "import sys; from foveal.io import DirectoryLock; "
        >>> code += "DirectoryLock(sys.argv[1], purpose='second').acquire()"
        >>> with DirectoryLock(d, purpose="example"):
        ...     other = subprocess.run([sys.executable, "-c", code, d], capture_output=True)
        >>> other.returncode != 0 and b"in use by another foveal process" in other.stderr
        True
    """

    FILE = ".foveal.lock"
    #: Directories this process holds: resolved path -> how many holders share the lock.
    _held: ClassVar[dict[str, int]] = {}

    def __init__(self, directory: str | os.PathLike[str], *, purpose: str) -> None:
        self.directory = Path(directory)
        self.purpose = purpose
        self._fd: int | None = None
        self._key: str | None = None

    def acquire(self) -> DirectoryLock:
        import time

        self.directory.mkdir(parents=True, exist_ok=True)
        key = str(self.directory.resolve())
        if key in self._held:  # this process holds it already
            self._held[key] += 1
            self._key = key
            return self
        path = self.directory / self.FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no flock here: the lock is not enforced
            pass
        except OSError:
            os.close(fd)
            try:
                holder = json.loads(path.read_text(encoding="utf-8") or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            raise DirectoryLocked(
                f"{str(self.directory)!r} is in use by another foveal process (PID "
                f"{holder.get('pid', '?')}: {holder.get('purpose', 'unknown')}, since "
                f"{holder.get('started', '?')}); wait for it to finish or use another directory"
            ) from None
        info = {
            "pid": os.getpid(),
            "purpose": self.purpose,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd, self._key = fd, key
        self._held[key] = 1
        return self

    def release(self) -> None:
        if self._key is None:
            return
        self._held[self._key] -= 1
        if self._held[self._key] == 0:
            del self._held[self._key]
        self._key = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
