"""``eval_mode``: evaluate a model and restore every sub-module's own train/eval mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(model: nn.Module | None) -> Iterator[nn.Module | None]:
    """Put ``model`` in eval mode for the block; on exit (also on errors) restore the mode each
    sub-module had, so a model with mixed train/eval parts comes back exactly as it was.
    ``None`` is accepted and left alone."""
    if model is None:
        yield None
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
