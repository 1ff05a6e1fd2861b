"""Metrics: localisation of saliency maps (error, pointing game, insertion/deletion) and the
foreground score.

Example:
    >>> import torch
    >>> from foveal.metrics import localization_error
    >>> maps = torch.zeros(1, 1, 8, 8); maps[..., 2:6, 2:6] = 1
    >>> localization_error(maps, torch.tensor([[2, 2, 6, 6]]), rule="value", alpha=0.5)[0]
    0.0
"""

from __future__ import annotations

from foveal.metrics.localization import (
    DEFAULT_ALPHAS,
    RULES,
    LocalizationResult,
    box_iou,
    boxes_from_masks,
    insertion_deletion,
    localization_error,
    localization_sweep,
    pointing_game,
    select_alpha,
    threshold_maps,
)
from foveal.saliency.score import foreground_score

__all__ = [
    "DEFAULT_ALPHAS",
    "RULES",
    "LocalizationResult",
    "box_iou",
    "boxes_from_masks",
    "foreground_score",
    "insertion_deletion",
    "localization_error",
    "localization_sweep",
    "pointing_game",
    "select_alpha",
    "threshold_maps",
]
