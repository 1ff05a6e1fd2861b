"""In-memory image datasets with optional foreground masks and boxes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["ArrayDataset"]


class ArrayDataset(Dataset[dict[str, torch.Tensor]]):
    """Images (stored as uint8), labels and, where known, masks and boxes.

    Indexing gives a dict ``{"image": (C,H,W) float in [0,1], "label": int64 scalar, "mask":
    (1,H,W) float in {0,1}, "box": (4,) int64}`` (mask and box only when the dataset has
    them), so the standard ``DataLoader`` collates batches. :meth:`batch` gathers a batch of
    indices directly, which is what foveal's own loops use.

    Attributes:
        name: dataset name; ``classes``: class names; ``has_masks`` / ``has_boxes``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        masks: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        classes: Sequence[str] | None = None,
        name: str = "dataset",
        meta: dict[str, Any] | None = None,
    ) -> None:
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be stored as uint8; got {images.dtype}")
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N,C,H,W); got {tuple(images.shape)}")
        n = images.shape[0]
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},); got {tuple(labels.shape)}")
        if masks is not None and (masks.shape[0] != n or masks.shape[2:] != images.shape[2:]):
            raise ValueError(
                f"masks must have shape ({n},1,H,W) matching images; got {tuple(masks.shape)}"
            )
        if boxes is not None and boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape ({n},4); got {tuple(boxes.shape)}")
        self._images = images.contiguous()
        self.labels = labels.long().contiguous()
        self._masks = None if masks is None else masks.to(torch.uint8).contiguous()
        self.boxes = None if boxes is None else boxes.long().contiguous()
        num = int(self.labels.max()) + 1 if n else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num)]
        self.name = name
        self.meta = dict(meta or {})
        self._float: torch.Tensor | None = None

    # ---------------------------------------------------------------- properties
    @property
    def has_masks(self) -> bool:
        return self._masks is not None

    @property
    def has_boxes(self) -> bool:
        return self.boxes is not None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self._images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def images(self) -> torch.Tensor:
        """All images as float32 in [0,1] (converted once, then cached)."""
        if self._float is None:
            self._float = self._images.float().div_(255.0)
        return self._float

    @property
    def images_uint8(self) -> torch.Tensor:
        return self._images

    @property
    def masks(self) -> torch.Tensor | None:
        return None if self._masks is None else self._masks.float()

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self._images.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        out = {"image": self._images[index].float() / 255.0, "label": self.labels[index]}
        if self._masks is not None:
            out["mask"] = self._masks[index].float()
        if self.boxes is not None:
            out["box"] = self.boxes[index]
        return out

    def batch(self, indices: torch.Tensor | Sequence[int] | slice) -> dict[str, torch.Tensor]:
        """Gather a batch as a dict of stacked tensors (same keys as an item)."""
        idx = indices if isinstance(indices, slice) else torch.as_tensor(indices, dtype=torch.long)
        out = {"image": self._images[idx].float() / 255.0, "label": self.labels[idx]}
        if self._masks is not None:
            out["mask"] = self._masks[idx].float()
        if self.boxes is not None:
            out["box"] = self.boxes[idx]
        return out

    def subset(self, indices: torch.Tensor | Sequence[int] | slice) -> ArrayDataset:
        """A new dataset holding only ``indices`` (shares nothing mutable with this one)."""
        idx = indices if isinstance(indices, slice) else torch.as_tensor(indices, dtype=torch.long)
        return ArrayDataset(
            self._images[idx].clone(),
            self.labels[idx].clone(),
            masks=None if self._masks is None else self._masks[idx].clone(),
            boxes=None if self.boxes is None else self.boxes[idx].clone(),
            classes=self.classes,
            name=self.name,
            meta=self.meta,
        )

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        extras = [k for k, v in (("masks", self._masks), ("boxes", self.boxes)) if v is not None]
        return (
            f"ArrayDataset(name={self.name!r}, n={len(self)}, shape=({c},{h},{w}), "
            f"classes={self.num_classes}, extras={extras})"
        )
