"""The ``foveal`` command line. Each command lives in its own module and registers on ``app``."""

from __future__ import annotations

from foveal.cli._app import app, fail

# Command modules: importing one registers its commands on ``app``.
from foveal.cli import basics  # noqa: F401  isort: skip
from foveal.cli import attack  # noqa: F401  isort: skip
from foveal.cli import train  # noqa: F401  isort: skip
from foveal.cli import saliency  # noqa: F401  isort: skip
from foveal.cli import smooth  # noqa: F401  isort: skip
from foveal.cli import evaluate  # noqa: F401  isort: skip
from foveal.cli import reproduce  # noqa: F401  isort: skip
from foveal.cli import detect  # noqa: F401  isort: skip

__all__ = ["app", "fail", "main"]


def main() -> None:
    app()
