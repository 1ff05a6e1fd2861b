"""The dataset registry: what ``foveal datasets`` lists and :func:`foveal.data.load` reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from foveal.data.base import ArrayDataset
from foveal.registry import Registry

__all__ = ["DATASETS", "DatasetInfo", "register"]


@dataclass(frozen=True)
class DatasetInfo:
    """What ``foveal datasets`` lists about a dataset."""

    name: str
    description: str
    loader: Callable[..., ArrayDataset]
    builtin: bool
    sizes: str
    masks: bool


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register(info: DatasetInfo) -> None:
    """Register a dataset under ``info.name``."""
    DATASETS.register(info.name, help=info.description)(info)
