"""Datasets: the built-in ``shapes`` and ``digits`` sets, and real datasets from a local root.

Every dataset is an :class:`ArrayDataset` of images in [0,1] with labels and, where the data
provide them, foreground masks and boxes.

Example:
    >>> import foveal
    >>> train = foveal.data.load("shapes", split="train", n=64)
    >>> train.images.shape, train.has_masks
    (torch.Size([64, 3, 32, 32]), True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from foveal.data.base import ArrayDataset
from foveal.data.cache import cache_dir, cached_tensors
from foveal.data.registry import DATASETS, DatasetInfo
from foveal.data.registry import register as _register

__all__ = ["DATASETS", "ArrayDataset", "DatasetInfo", "cache_dir", "load"]


def load(
    name: str,
    *,
    split: str = "train",
    n: int | None = None,
    size: int | None = None,
    root: str | Path | None = None,
    seed: int = 0,
) -> ArrayDataset:
    """Load dataset ``name`` (see ``foveal datasets``).

    Args:
        name: registered dataset name (``shapes``, ``digits``, ``mnist``, ``cifar10``, ...).
        split: ``"train"`` or ``"test"``.
        n: number of samples (default: the dataset's full split; for ``shapes`` 10,000 / 2,000).
        size: image side in pixels (``shapes``: 32 default; real datasets are resized to it).
        root: local directory of a real dataset (required for those; nothing is downloaded).
        seed: generation / split seed.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if size is not None and size < 8:
        raise ValueError(f"size must be >= 8 pixels; got {size}")
    info = DATASETS.get(name)
    return info.loader(split=split, n=n, size=size, root=root, seed=seed)


# ------------------------------------------------------------------------------- shapes
def _generated(
    name: str, generate: Any, version: int, classes: Any, default_size: int, min_size: int
) -> Any:
    """The loader of a procedurally generated dataset (cached, 10,000 / 2,000 by default)."""

    def loader(
        *, split: str, n: int | None, size: int | None, root: object, seed: int
    ) -> ArrayDataset:
        side = default_size if size is None else int(size)
        if side < min_size:
            raise ValueError(f"{name} needs size >= {min_size} pixels; got {side}")
        count = (10_000 if split == "train" else 2_000) if n is None else int(n)
        split_id = 0 if split == "train" else 1
        params = {"n": count, "size": side, "seed": seed, "split": split_id, "v": version}

        def make() -> dict[str, torch.Tensor]:
            arr = generate(count, size=side, seed=seed, split=split_id)
            return {
                "images": torch.from_numpy(arr.images),
                "labels": torch.from_numpy(arr.labels),
                "masks": torch.from_numpy(arr.masks),
                "boxes": torch.from_numpy(arr.boxes),
            }

        t = cached_tensors(name, params, make)
        return ArrayDataset(
            t["images"], t["labels"], masks=t["masks"], boxes=t["boxes"], classes=classes,
            name=name, meta={"split": split, **params},
        )  # fmt: skip

    return loader


def _load_shapes(**kwargs: Any) -> ArrayDataset:
    from foveal.data.shapes import GENERATOR_VERSION, SHAPE_CLASSES, generate_shapes

    loader = _generated("shapes", generate_shapes, GENERATOR_VERSION, SHAPE_CLASSES, 32, 16)
    return loader(**kwargs)


def _load_objects(**kwargs: Any) -> ArrayDataset:
    from foveal.data.objects import GENERATOR_VERSION, OBJECT_CLASSES, generate_objects

    loader = _generated("objects", generate_objects, GENERATOR_VERSION, OBJECT_CLASSES, 64, 32)
    return loader(**kwargs)


_register(
    DatasetInfo(
        "shapes",
        "built-in salient objects on natural-texture backgrounds; exact masks and boxes",
        _load_shapes,
        builtin=True,
        sizes="10,000 train / 2,000 test; 3x32x32 (size configurable)",
        masks=True,
    )
)

_register(
    DatasetInfo(
        "objects",
        "built-in textured objects on defocused backgrounds (the papers' premises hold); exact "
        "masks and boxes",
        _load_objects,
        builtin=True,
        sizes="10,000 train / 2,000 test; 3x64x64 (96, 224 work)",
        masks=True,
    )
)

from foveal.data import digits as _digits  # noqa: E402,F401  (registers "digits")
from foveal.data import real as _real  # noqa: E402,F401  (registers the real datasets)
