"""Small shared pieces of the reproductions: batched attack accuracy, figures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from foveal._modes import eval_mode
from foveal.batching import map_batches

Batch = dict[str, torch.Tensor]


def accuracy_under(
    model: nn.Module,
    data: Any,
    make_adv: Callable[[Batch], torch.Tensor] | None,
    *,
    batch_size: int = 250,
    judge: nn.Module | None = None,
) -> float:
    """Accuracy (%) of ``judge`` (default ``model``) on ``make_adv(batch)`` over ``data``.

    ``make_adv`` None means clean accuracy. ``judge`` differs from ``model`` for transfer and
    gray-box rows (e.g. the model behind an input transform).
    """
    judge = model if judge is None else judge

    def correct(b: Batch) -> torch.Tensor:
        x = b["image"] if make_adv is None else make_adv(b)
        with torch.no_grad(), eval_mode(judge):
            return judge(x).argmax(1) == b["label"]

    hits = map_batches(correct, data, batch_size=batch_size)
    return 100.0 * (0 if hits is None else int(hits.sum())) / max(len(data), 1)


def adversarial_batches(
    data: Any, make_adv: Callable[[Batch], torch.Tensor], *, batch_size: int = 250
) -> torch.Tensor:
    """All of ``data``'s adversarial images, batch by batch, concatenated."""
    return map_batches(make_adv, data, batch_size=batch_size)


def savefig(fig: Any, path: Any) -> None:
    """Save a matplotlib figure (PNG, 120 dpi, tight) and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def on_batch(attack: Callable[..., torch.Tensor]) -> Callable[[Batch], torch.Tensor]:
    """``attack(images, labels)`` as a function of a data batch."""

    def make(b: Batch) -> torch.Tensor:
        return attack(b["image"], b["label"])

    return make
