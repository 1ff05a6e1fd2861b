"""Localisation metrics for saliency maps (Fong & Vedaldi 2017; Elliott et al. 2019, Table 1).

- Threshold rules on a heatmap ``h`` (:func:`threshold_maps`): ``value`` keeps
  ``h - min >= alpha (max - min)`` (optionally after a square-root transform of the
  min-max-normalised map), ``mean`` keeps ``h >= alpha * mean(h)``, ``percent`` keeps the
  ``alpha`` fraction of highest pixels (rank-based).
- Boxes (:func:`boxes_from_masks`): the bounding box of the largest 8-connected component
  (Elliott et al. 2019) or of all surviving pixels (Fong & Vedaldi); ``(x0, y0, x1, y1)`` with
  ``x1``/``y1`` exclusive, the convention of :mod:`foveal.data`. An empty mask gives the empty box
  (0,0,0,0).
- :func:`box_iou`; a prediction is correct when IoU >= 0.5; error = 1 - accuracy
  (:func:`localization_error`); :func:`localization_sweep` evaluates a grid of ``alpha`` and
  :func:`select_alpha` picks the best on a held-out split.
- :func:`pointing_game` (Zhang et al. 2016): a hit when the map's arg-max lies within
  ``tolerance`` pixels of the object mask.
- :func:`insertion_deletion` (Petsiuk et al. 2018): reveal (insertion) or remove (deletion)
  pixels in decreasing saliency order and integrate the class probability (trapezoid AUC).

Written here: the connected components and the Euclidean distance transform come from
``scipy.ndimage``; the rest is tensor bookkeeping that no library provides in this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foveal._validation import check_images

__all__ = [
    "DEFAULT_ALPHAS",
    "RULES",
    "LocalizationResult",
    "box_iou",
    "boxes_from_masks",
    "insertion_deletion",
    "localization_error",
    "localization_sweep",
    "pointing_game",
    "select_alpha",
    "threshold_maps",
]

RULES = ("value", "mean", "percent")

#: The alpha grids searched per rule (Elliott et al. 2019: value thresholds 0..1 in steps of 0.05).
DEFAULT_ALPHAS: dict[str, tuple[float, ...]] = {
    "value": tuple(round(0.05 * i, 2) for i in range(21)),
    "mean": tuple(round(0.5 * i, 1) for i in range(11)),
    "percent": tuple(round(0.05 * i, 2) for i in range(1, 21)),
}


def _check_maps(maps: object, name: str = "maps") -> torch.Tensor:
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(maps).__name__}")
    if maps.ndim == 3:
        maps = maps.unsqueeze(1)
    if maps.ndim != 4 or maps.shape[1] != 1:
        raise ValueError(f"{name} must have shape (N,1,H,W) or (N,H,W); got {tuple(maps.shape)}")
    if maps.numel() and not bool(torch.isfinite(maps).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return maps.detach().float()


def _check_boxes(boxes: object, n: int, name: str = "boxes") -> torch.Tensor:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(boxes).__name__}")
    if boxes.shape != (n, 4):
        raise ValueError(f"{name} must have shape ({n},4); got {tuple(boxes.shape)}")
    return boxes.detach().long().cpu()


def threshold_maps(
    maps: torch.Tensor, rule: str, alpha: float, *, sqrt: bool = False
) -> torch.Tensor:
    """Binary masks (N,H,W) of the pixels a threshold rule keeps.

    Args:
        maps: (N,1,H,W) or (N,H,W) heatmaps.
        rule: ``"value"``, ``"mean"`` or ``"percent"`` (see the module docstring).
        alpha: the rule's parameter (value: in [0,1]; mean: >= 0; percent: fraction in [0,1]).
        sqrt: square-root transform the min-max-normalised map first (``value`` and ``mean``).

    Example:
        >>> m = torch.tensor([[[[0.0, 1.0, 2.0, 4.0]]]])
        >>> threshold_maps(m, "value", 0.5).int()
        tensor([[[0, 0, 1, 1]]], dtype=torch.int32)
    """
    maps = _check_maps(maps)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    alpha = float(alpha)
    flat = maps.flatten(1).double()
    n, m = flat.shape
    if rule == "percent":
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha for rule 'percent' must lie in [0, 1]; got {alpha:g}")
        k = min(m, int(np.ceil(round(alpha * m, 9))))
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices
        keep = (torch.arange(m) < k).expand(n, m)
        out = torch.zeros(n, m, dtype=torch.bool).scatter(1, order.cpu(), keep)
        return out.view(n, *maps.shape[2:]).to(maps.device)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    norm = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, 1.0), 0.0)
    if sqrt:
        norm = norm.sqrt()
    if rule == "value":
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha for rule 'value' must lie in [0, 1]; got {alpha:g}")
        out = norm >= alpha
    else:
        if alpha < 0:
            raise ValueError(f"alpha for rule 'mean' must be >= 0; got {alpha:g}")
        base = norm if sqrt else flat
        out = base >= alpha * base.mean(dim=1, keepdim=True)
    return out.view(n, *maps.shape[2:])


def boxes_from_masks(masks: torch.Tensor, *, mode: str = "largest") -> torch.Tensor:
    """Bounding boxes (N,4) int64 ``(x0, y0, x1, y1)``, exclusive ``x1``/``y1``, of binary masks.

    Args:
        masks: (N,H,W) or (N,1,H,W) boolean / {0,1} masks.
        mode: ``"largest"`` — the largest 8-connected component (ties: the first found in
            raster order); ``"all"`` — all non-zero pixels.

    Example:
        >>> m = torch.zeros(1, 4, 5, dtype=torch.bool); m[0, 1:3, 2:4] = True
        >>> boxes_from_masks(m)
        tensor([[2, 1, 4, 3]])
    """
    from scipy import ndimage

    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a torch.Tensor; got {type(masks).__name__}")
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N,H,W) or (N,1,H,W); got {tuple(masks.shape)}")
    if mode not in ("largest", "all"):
        raise ValueError(f"mode must be 'largest' or 'all'; got {mode!r}")
    arr = masks.detach().cpu().numpy() != 0
    out = np.zeros((arr.shape[0], 4), dtype=np.int64)
    structure = np.ones((3, 3), dtype=bool)
    for i, m in enumerate(arr):
        if not m.any():
            continue
        if mode == "largest":
            lab, count = ndimage.label(m, structure=structure)
            if count > 1:
                sizes = np.bincount(lab.ravel())[1:]
                m = lab == (int(np.argmax(sizes)) + 1)
        ys = np.flatnonzero(m.any(axis=1))
        xs = np.flatnonzero(m.any(axis=0))
        out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return torch.from_numpy(out)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of paired boxes (N,4) ``(x0, y0, x1, y1)`` (exclusive ends).

    Empty boxes have area 0; two empty boxes have IoU 0.

    Example:
        >>> box_iou(torch.tensor([[0, 0, 2, 2]]), torch.tensor([[1, 0, 3, 2]]))
        tensor([0.3333])
    """
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(
            f"boxes must both have shape (N,4); got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    a = a.double()
    b = b.double()
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp_min(0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp_min(0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0) * (a[:, 3] - a[:, 1]).clamp_min(0)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), 0.0).float()


def localization_error(
    maps: torch.Tensor,
    boxes: torch.Tensor,
    *,
    rule: str = "value",
    alpha: float = 0.5,
    sqrt: bool = False,
    box: str = "largest",
    iou_threshold: float = 0.5,
) -> tuple[float, torch.Tensor]:
    """Localisation error of ``maps`` against ground-truth ``boxes`` for one threshold.

    Returns:
        ``(error, correct)``: the fraction of images with IoU < ``iou_threshold`` and the
        per-image (N,) boolean correctness.

    Example:
        >>> m = torch.zeros(1, 1, 8, 8); m[..., 2:6, 2:6] = 1
        >>> localization_error(m, torch.tensor([[2, 2, 6, 6]]))[0]
        0.0
    """
    maps = _check_maps(maps)
    gt = _check_boxes(boxes, maps.shape[0])
    pred = boxes_from_masks(threshold_maps(maps, rule, alpha, sqrt=sqrt), mode=box)
    correct = box_iou(pred, gt) >= iou_threshold
    error = 1.0 - float(correct.float().mean()) if len(correct) else float("nan")
    return error, correct


@dataclass
class LocalizationResult:
    """Errors of one threshold rule over a grid of ``alpha`` (and the best one)."""

    rule: str
    sqrt: bool
    box: str
    errors: dict[float, float] = field(default_factory=dict)

    @property
    def best_alpha(self) -> float:
        """The alpha with the lowest error (the smallest such alpha on ties)."""
        return min(self.errors, key=lambda a: (self.errors[a], a))

    @property
    def best_error(self) -> float:
        return self.errors[self.best_alpha]


def localization_sweep(
    maps: torch.Tensor,
    boxes: torch.Tensor,
    *,
    rule: str = "value",
    alphas: Sequence[float] | None = None,
    sqrt: bool = False,
    box: str = "largest",
    iou_threshold: float = 0.5,
) -> LocalizationResult:
    """Localisation error for every ``alpha`` of a grid (default :data:`DEFAULT_ALPHAS`)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    grid = DEFAULT_ALPHAS[rule] if alphas is None else tuple(float(a) for a in alphas)
    if not grid:
        raise ValueError("alphas must not be empty")
    result = LocalizationResult(rule=rule, sqrt=sqrt, box=box)
    for a in grid:
        result.errors[a] = localization_error(
            maps, boxes, rule=rule, alpha=a, sqrt=sqrt, box=box, iou_threshold=iou_threshold
        )[0]
    return result


def select_alpha(
    maps: torch.Tensor,
    boxes: torch.Tensor,
    *,
    rule: str = "value",
    alphas: Sequence[float] | None = None,
    sqrt: bool = False,
    box: str = "largest",
) -> float:
    """The alpha of the grid with the lowest error on a held-out split (maps, boxes)."""
    return localization_sweep(maps, boxes, rule=rule, alphas=alphas, sqrt=sqrt, box=box).best_alpha


def pointing_game(
    maps: torch.Tensor, masks: torch.Tensor, *, tolerance: float = 15.0
) -> torch.Tensor:
    """Pointing-game hits (N,) bool: the arg-max of each map lies within ``tolerance`` pixels
    (Euclidean) of the object mask. Ties for the maximum: the first in raster order.

    Args:
        maps: (N,1,H,W) heatmaps.
        masks: (N,1,H,W) or (N,H,W) {0,1} object masks.
        tolerance: distance in pixels (15 in Zhang et al. on ImageNet-sized images; scale it
            to the image size).
    """
    from scipy import ndimage

    maps = _check_maps(maps)
    masks = _check_maps(masks, "masks")
    if masks.shape != maps.shape:
        raise ValueError(
            f"masks must have the shape of maps {tuple(maps.shape)}; got {tuple(masks.shape)}"
        )
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    n = maps.shape[0]
    idx = maps.flatten(1).argmax(dim=1).cpu().numpy()
    obj = masks[:, 0].cpu().numpy() != 0
    hits = np.zeros(n, dtype=bool)
    for i in range(n):
        if not obj[i].any():
            continue
        dist = ndimage.distance_transform_edt(~obj[i])
        hits[i] = dist.flat[idx[i]] <= tolerance
    return torch.from_numpy(hits)


@torch.no_grad()
def insertion_deletion(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    target: torch.Tensor | None = None,
    *,
    mode: str = "deletion",
    steps: int = 16,
    baseline: str | torch.Tensor | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Insertion or deletion AUC (N,) of the target-class probability.

    Pixels are ranked by decreasing saliency (ties by position); at step ``k`` of ``steps``
    the top ``round(k / steps * H * W)`` pixels are removed (deletion: replaced by the
    baseline) or revealed (insertion: the rest shows the baseline). The AUC of the
    probability curve over the fraction in [0,1] is the trapezoid rule. Higher insertion and
    lower deletion AUC are better.

    Args:
        model: classifier taking [0,1] pixels (evaluated in eval mode; its mode is restored).
        images: (N,C,H,W) in [0,1].
        maps: (N,1,H,W) saliency maps.
        target: (N,) classes (default: the predicted class on the clean images).
        mode: ``"deletion"`` or ``"insertion"``.
        steps: curve points minus one (>= 1).
        baseline: ``"zeros"`` (deletion default), ``"blur"`` (insertion default, a Gaussian
            blur with sigma of a quarter of the image side) or a tensor like ``images``.
        batch_size: images per forward pass.
    """
    from foveal.saliency.base import eval_mode, resolve_target
    from foveal.saliency.fixation import gaussian_blur

    images = check_images(images)
    maps = _check_maps(maps)
    n, _, h, w = images.shape
    if maps.shape != (n, 1, h, w):
        raise ValueError(f"maps must have shape {(n, 1, h, w)}; got {tuple(maps.shape)}")
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion'; got {mode!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if baseline is None:
        baseline = "zeros" if mode == "deletion" else "blur"
    if isinstance(baseline, torch.Tensor):
        if baseline.shape != images.shape:
            raise ValueError(
                f"baseline must have the shape of images {tuple(images.shape)}; got "
                f"{tuple(baseline.shape)}"
            )
        base = baseline.to(images.device, images.dtype)
    elif baseline == "zeros":
        base = torch.zeros_like(images)
    elif baseline == "blur":
        base = gaussian_blur(images, max(1.0, min(h, w) / 4), mode="replicate")
    else:
        raise ValueError(f"baseline must be 'zeros', 'blur' or a tensor; got {baseline!r}")
    with eval_mode(model):
        y = resolve_target(model, images, target)
        order = torch.sort(maps.flatten(1).to(images.device), dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order.indices)
        ranks.scatter_(1, order.indices, torch.arange(h * w, device=images.device).expand(n, -1))
        ranks = ranks.view(n, 1, h, w)
        probs = torch.empty(n, steps + 1, device=images.device)
        for k in range(steps + 1):
            count = round(k / steps * h * w)
            top = (ranks < count).to(images.dtype)
            x = (
                images * (1 - top) + base * top
                if mode == "deletion"
                else images * top + base * (1 - top)
            )
            for s in range(0, n, batch_size):
                logits = model(x[s : s + batch_size])
                p = F.softmax(logits, dim=1).gather(1, y[s : s + batch_size, None])[:, 0]
                probs[s : s + batch_size, k] = p
    dx = 1.0 / steps
    return (dx * (probs[:, 1:] + probs[:, :-1]) / 2).sum(dim=1).cpu()
