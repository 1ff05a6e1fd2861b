"""The ``foveal`` command line. Each command lives in its own module and registers on ``app``."""

from __future__ import annotations

from foveal.app.cli._app import app, fail

# Command modules: importing one registers its commands on ``app``.
from foveal.app.cli import basics  # noqa: F401  isort: skip
from foveal.app.cli import listing  # noqa: F401  isort: skip
from foveal.app.cli import attack  # noqa: F401  isort: skip
from foveal.app.cli import train  # noqa: F401  isort: skip
from foveal.app.cli import saliency  # noqa: F401  isort: skip
from foveal.app.cli import smooth  # noqa: F401  isort: skip
from foveal.app.cli import evaluate  # noqa: F401  isort: skip
from foveal.app.cli import reproduce  # noqa: F401  isort: skip
from foveal.app.cli import detect  # noqa: F401  isort: skip

__all__ = ["app", "fail", "main"]


def main() -> None:
    app()
