"""Superpixel partitions: SLIC plus merging of similar neighbours (Dong et al. 2020).

Uses scikit-image for both steps: ``skimage.segmentation.slic`` for the template, then a
region-adjacency graph of mean colours (``skimage.graph.rag_mean_color``) cut at ``beta``
(``skimage.graph.cut_threshold``), which merges — transitively — adjacent superpixels whose
mean colours are closer than ``beta``. What is written here is the batching (a process pool
for large batches, in-process for small ones), the choice of ``n_segments`` from a target
superpixel size, and the contiguous relabelling.

Units: ``beta`` is a Euclidean distance between mean RGB colours in 0-255 units (as Dong et al.
2020, whose ablation uses beta in {0, 2, 4}); for grey images, in 0-255 grey levels.
``compactness`` is SLIC's (colour in CIELAB for 3-channel images, 10 by default).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from foveal._validation import check_images

__all__ = ["merge_similar", "slic_superpixels", "superpixel_means"]

logger = logging.getLogger(__name__)

#: Batches smaller than this run in-process (a pool costs more than it saves).
POOL_MIN_IMAGES = 64


def merge_similar(image: np.ndarray, labels: np.ndarray, beta: float) -> np.ndarray:
    """Merge adjacent regions of ``labels`` whose mean colours differ by less than ``beta``.

    Args:
        image: (H,W,C) float array in 0-255 units.
        labels: (H,W) integer labels.
        beta: colour-distance threshold in 0-255 units (``beta = 0`` merges nothing).

    Returns:
        (H,W) int64 labels, contiguous from 0.
    """
    from skimage import graph

    if beta < 0:
        raise ValueError(f"beta must be >= 0; got {beta}")
    if labels.max() > labels.min():
        rag = graph.rag_mean_color(image, labels, connectivity=2, mode="distance")
        labels = graph.cut_threshold(labels, rag, beta, in_place=True)
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int64)


def _segment_one(
    image: np.ndarray, n_segments: int, compactness: float, beta: float, sigma: float
) -> np.ndarray:
    from skimage.segmentation import slic

    labels = slic(
        image,
        n_segments=n_segments,
        compactness=compactness,
        sigma=sigma,
        start_label=0,
        channel_axis=-1,
        convert2lab=image.shape[-1] == 3,
    )
    return merge_similar(image * 255.0, labels, beta)


def _segment_chunk(
    images: np.ndarray, n_segments: int, compactness: float, beta: float, sigma: float
) -> np.ndarray:
    return np.stack([_segment_one(im, n_segments, compactness, beta, sigma) for im in images])


def slic_superpixels(
    images: torch.Tensor,
    *,
    size: float = 8.0,
    compactness: float = 10.0,
    beta: float = 0.0,
    sigma: float = 0.0,
    workers: int | None = None,
) -> torch.Tensor:
    """SLIC superpixels of target side ``size``, then merging of similar neighbours.

    ``n_segments = max(1, round(H * W / size^2))`` (SLIC's grid step is about ``size``); SLIC
    enforces connectivity, so every superpixel — and every merged region, a union of adjacent
    superpixels — is 4-/8-connected. Ids are relabelled contiguously ``0..K-1`` per image.

    Args:
        images: (N,C,H,W) in [0,1] (C = 3 is segmented in CIELAB; other C as is).
        size: target superpixel side S in pixels (>= 1; Dong et al. 2020 uses 2-8).
        compactness: SLIC's colour/space trade-off (default 10).
        beta: merge threshold, Euclidean distance of mean colours in 0-255 units (default 0:
            no merging).
        sigma: Gaussian pre-smoothing of SLIC (default 0).
        workers: processes for the batch; None = up to ``os.cpu_count()`` for batches of at
            least ``POOL_MIN_IMAGES`` images, else in-process; 0 or 1 = in-process.

    Returns:
        (N,H,W) int64 ids on the images' device.

    Example:
        >>> import foveal
        >>> x = foveal.data.load("shapes", split="test", n=2).images
        >>> ids = slic_superpixels(x, size=4, beta=10)
        >>> ids.shape, int(ids[0].min())
        (torch.Size([2, 32, 32]), 0)
    """
    images = check_images(images)
    if not size >= 1:
        raise ValueError(f"size (superpixel side S) must be >= 1 pixel; got {size}")
    if not compactness > 0:
        raise ValueError(f"compactness must be > 0; got {compactness}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0 (0-255 colour units); got {beta}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0 or None; got {workers}")
    n, _, h, w = images.shape
    n_segments = max(1, round(h * w / (size * size)))
    arr = images.detach().permute(0, 2, 3, 1).double().cpu().numpy()
    if workers is None:
        workers = (os.cpu_count() or 1) if n >= POOL_MIN_IMAGES else 1
    workers = min(workers, n) if n else 1
    args = (n_segments, float(compactness), float(beta), float(sigma))
    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        out = _segment_chunk(arr, *args) if n else np.zeros((0, h, w), dtype=np.int64)
    else:
        chunks = np.array_split(np.arange(n), workers * 4)
        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            futures = [ex.submit(_segment_chunk, arr[c], *args) for c in chunks if len(c)]
            out = np.concatenate([f.result() for f in futures])
    logger.debug("superpixels: %d images, %d segments requested", n, n_segments)
    return torch.from_numpy(out).to(images.device)


def superpixel_means(images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean colour of each superpixel painted back onto its pixels (N,C,H,W).

    Useful to visualise a partition and to check it: merged regions hold similar colours.
    """
    images = check_images(images)
    if ids.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"ids must have shape {(images.shape[0], *images.shape[2:])}; got {tuple(ids.shape)}"
        )
    n, c, h, w = images.shape
    flat_ids = ids.to(images.device).long().view(n, 1, h * w)
    k = int(ids.max()) + 1 if ids.numel() else 0
    sums = torch.zeros(n, c, k, device=images.device, dtype=images.dtype)
    sums.scatter_add_(2, flat_ids.expand(n, c, h * w), images.reshape(n, c, h * w))
    counts = torch.zeros(n, 1, k, device=images.device, dtype=images.dtype)
    counts.scatter_add_(2, flat_ids, torch.ones_like(flat_ids, dtype=images.dtype))
    means = sums / counts.clamp_min(1)
    return means.gather(2, flat_ids.expand(n, c, h * w)).view(n, c, h, w)
