"""The Typer application every command module registers on, and helpers the commands share.

Errors: every command runs inside :class:`FovealGroup`, which turns an exception into one line
on stderr and a non-zero exit — foveal's own errors (``ValueError`` and its subclasses, a
checkpoint error, a locked output directory), ``TypeError``, ``OSError``,
``FloatingPointError`` and ``MemoryError`` with their message, anything else as an internal
error with its type. ``FOVEAL_DEBUG=1`` shows the traceback instead. Ctrl-C exits with 130.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

#: Exit status of a command stopped by an error (2, like a usage error).
ERROR = 2
#: Exit status of a command stopped by Ctrl-C.
INTERRUPTED = 130


def describe_error(exc: BaseException) -> str:
    """One line for ``exc`` (what the command line prints after ``error:``).

    Example:
        >>> describe_error(ValueError("eps must be >= 0; got -1"))
        'eps must be >= 0; got -1'
        >>> describe_error(FileNotFoundError(2, "No such file or directory", "/nowhere"))
        "No such file or directory: '/nowhere'"
    """
    from pydantic import ValidationError

    from foveal._validation import format_validation_error

    if isinstance(exc, ValidationError):
        return f"invalid settings: {format_validation_error(exc)}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {str(exc.filename)!r}" if exc.filename is not None else ""
        return f"{exc.strerror}{where}"
    if isinstance(exc, MemoryError):
        return "out of memory; use a smaller --batch-size, --n or image --size"
    if isinstance(exc, FloatingPointError):
        return f"numerical failure: {exc}"
    from foveal.io import DirectoryLocked

    text = " ".join(str(exc).split())  # one line
    if isinstance(exc, (ValueError, TypeError, DirectoryLocked)):
        return text
    return f"internal error ({type(exc).__name__}: {text}); FOVEAL_DEBUG=1 shows the traceback"


#: What the command-line library raises for its own exits and usage errors (passed through).
_PASS: tuple[type[BaseException], ...] = (
    typer.Exit,
    typer.Abort,
    *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)


class FovealGroup(TyperGroup):
    """The command group: runs a command and turns any exception into one line (see above)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS:
            raise
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            if os.environ.get("FOVEAL_DEBUG"):
                raise
            typer.secho(f"error: {describe_error(exc)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(ERROR) from None


app = typer.Typer(
    name="foveal",
    cls=FovealGroup,
    help="Saliency-aware adversarial machine learning on images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@contextmanager
def output_directory(path: Path, purpose: str) -> Iterator[Path]:
    """Check ``--out`` before any work and hold its lock while the command writes into it.

    The directory is created if missing; a path that is a file, or a directory that cannot be
    written, is an error naming it; another live foveal process writing there is an error
    naming that process (:class:`foveal.io.DirectoryLock`).
    """
    from foveal.io import DirectoryLock, remove_stale_temporaries

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {str(out)!r} cannot be created: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(out)!r} is not writable")
    with DirectoryLock(out, purpose=purpose):
        remove_stale_temporaries(out)
        yield out


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error to stderr and exit (no traceback for user errors)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def parse_param(text: str) -> tuple[str, Any]:
    """``"mu=0.9"`` -> ``("mu", 0.9)``; values: true/false/none, integers, fractions, strings.

    Example:
        >>> parse_param("eps=8/255")[1] == 8 / 255, parse_param("norm=l2"), parse_param("fast=true")
        (True, ('norm', 'l2'), ('fast', True))
    """
    from foveal._validation import parse_fraction

    if "=" not in text:
        raise ValueError(f"--param must look like KEY=VALUE; got {text!r}")
    key, raw = (s.strip() for s in text.split("=", 1))
    key = key.replace("-", "_")
    if not key.isidentifier():
        raise ValueError(f"--param key must be a name; got {key!r}")
    low = raw.lower()
    if low in ("true", "false"):
        return key, low == "true"
    if low in ("none", "null"):
        return key, None
    try:
        return key, int(raw)
    except ValueError:
        pass
    try:
        return key, parse_fraction(raw, key)
    except ValueError:
        return key, raw


def check_count(value: int, name: str, *, maximum: int = 10_000_000) -> int:
    """``value`` if it is a count in [1, maximum], else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [1, {maximum:,}]; got {value!r}")
    return value


def load_model(path: Path, device: str) -> Any:
    """A checkpoint on ``device``; a device torch cannot use is an error naming it."""
    import torch

    import foveal

    try:
        torch.empty(0, device=device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"--device {device!r} cannot be used: {' '.join(str(exc).split())}"
        ) from None
    return foveal.models.load(path, map_location=device)
