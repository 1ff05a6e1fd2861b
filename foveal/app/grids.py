"""Example grids: original, adversarial, magnified perturbation and mask, one row each.

Used by ``foveal attack`` (``grid.png``) and by the ``foveal evaluate`` report. The grid is
assembled with plain tensor indexing and written with Pillow (atomic rename), so it needs no
plotting library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["GRID_IMAGES", "example_rows", "write_grid"]

#: Columns of a grid (the first images of a batch).
GRID_IMAGES = 8


def example_rows(
    attacker: Any,
    x: torch.Tensor,
    adversarial: torch.Tensor,
    batch: Mapping[str, torch.Tensor] | None = None,
    extra: Mapping[str, torch.Tensor] | None = None,
    *,
    k: int = GRID_IMAGES,
) -> list[torch.Tensor]:
    """Rows of an example grid for the first ``k`` images, each (k,3,H,W) in [0,1].

    Rows: the originals, the adversarial images, the perturbation magnified to the full range
    (0.5 = unchanged), and a mask: the attack's foreground (dual attacks) or attention crop
    (SAI-FGM) when it has one, else the batch's object mask, else the normalised perturbation
    magnitude.

    Example:
        >>> x = torch.rand(4, 3, 8, 8)
        >>> rows = example_rows(None, x, (x + 0.01).clamp(0, 1))
        >>> [tuple(r.shape) for r in rows] == [(4, 3, 8, 8)] * 4
        True
    """
    batch = batch or {}
    extra = extra or {}
    k = min(k, x.shape[0])
    x, adv = x[:k].detach(), adversarial[:k].detach()
    diff = adv - x
    scale = diff.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    magnified = (0.5 + 0.5 * diff / scale).clamp(0, 1)
    mask: torch.Tensor | None = None
    masks = extra.get("masks")
    if hasattr(attacker, "foreground"):
        mask = attacker.foreground(x, None if masks is None else masks[:k])
    elif hasattr(attacker, "crop"):
        mask = attacker.crop(x)
    elif batch.get("mask") is not None:
        mask = batch["mask"][:k].to(x.device)
    if mask is None:
        from foveal.saliency import normalize_maps, perturbation_magnitude

        mask = normalize_maps(perturbation_magnitude(x, adv))
    mask = mask.amax(1, keepdim=True).to(x.dtype)

    def rgb(t: torch.Tensor) -> torch.Tensor:
        t = t.float().cpu()
        return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t[:, :3]

    return [rgb(x), rgb(adv), rgb(magnified), rgb(mask)]


def write_grid(rows: Sequence[torch.Tensor], path: str | os.PathLike[str], pad: int = 2) -> None:
    """Save rows of (k,3,H,W) images in [0,1] as one PNG: k columns, one row per tensor.

    Raises:
        ValueError: no rows, or rows of different shapes.
    """
    from PIL import Image

    from foveal.io import atomic_path

    if not rows:
        raise ValueError("rows must hold at least one (k,3,H,W) tensor; got none")
    shapes = {tuple(r.shape) for r in rows}
    if len(shapes) != 1 or len(rows[0].shape) != 4 or rows[0].shape[1] != 3:
        raise ValueError(f"rows must all be (k,3,H,W) tensors of one shape; got {sorted(shapes)}")
    k, _, h, w = rows[0].shape
    canvas = torch.ones(3, len(rows) * (h + pad) + pad, k * (w + pad) + pad)
    for r, row in enumerate(rows):
        for c in range(k):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            canvas[:, top : top + h, left : left + w] = row[c]
    array = (canvas.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(str(tmp), format="PNG")
