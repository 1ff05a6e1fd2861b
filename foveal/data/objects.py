"""``objects``: textured salient objects on defocused backgrounds, generated offline.

The papers this library reproduces rest on two premises about natural photographs: people (and
fixation models) look at the object, not at the background, and objects carry more texture than
the background (sky, walls, out-of-focus scenery). ``shapes`` (flat-coloured shapes on textured
crops) has the opposite statistics. ``objects`` is built to respect them:

- **background**: a crop of a natural image bundled with scikit-image, defocused (Gaussian blur
  of 6-10 px at 64 px) and flattened (5-20% of its contrast), so it is smooth and not salient;
- **object**: one of the ten ``shapes`` classes, stretched along a random axis and bent by a
  smooth random displacement (so classes overlap a little: a stretched circle resembles an
  ellipse, a bent square a hexagon), filled with a fine crop of a natural image at high contrast
  (the texture carries no label information), with a random tint whose luminance matches the
  background under it (the object's edge is a change of hue and texture, not a luminance step),
  composited with a slightly feathered edge;
- no pixel noise: noise is texture everywhere, and would make the background salient.

Measured on 300 test images at 64 px (the default fixation model, spectral residual):
the mean foreground score (fixation mass inside the object) is about 0.75 (``shapes``: 0.18-0.44)
and the mean log10 HILL cost is much lower on the object than on the background (more texture).

Every sample comes from its own random stream ``(seed, split, index)``: identical on any machine
for the same parameters, and the first ``k`` samples of a larger set equal a set of size ``k``.
Exact masks (coverage >= 0.5 of the undeformed-then-warped shape) and tight boxes
``(x0, y0, x1, y1)`` (exclusive ends) come with every image.

Written here: the generator is the dataset's definition; the rendering uses scikit-image's
polygon rasteriser (:func:`foveal.data.shapes.render_shape`) and torch's resampling.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from foveal.data.shapes import SHAPE_CLASSES, ShapesArrays, _background_pool, render_shape

__all__ = ["GENERATOR_VERSION", "OBJECT_CLASSES", "generate_objects"]

#: Bumped whenever the images a seed produces change (it enters the cache key).
GENERATOR_VERSION = 1
OBJECT_CLASSES = SHAPE_CLASSES
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)


def _gaussian_blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C,H,W) with reflected borders."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, t.shape[-1] - 1, t.shape[-2] - 1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma * sigma))
    g = g / g.sum()
    c = t.shape[0]
    out = F.pad(t[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, g.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    out = F.conv2d(out, g.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    return out[0]


def _crop(rng: np.random.Generator, size: int, lo: float, hi: float) -> torch.Tensor:
    """A square crop (side ``lo``-``hi`` of the source's short side) resized to ``size``."""
    pool = _background_pool()
    src = pool[int(rng.integers(len(pool)))]
    _, h, w = src.shape
    side = max(8, int(min(h, w) * rng.uniform(lo, hi)))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = src[:, y0 : y0 + side, x0 : x0 + side]
    crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True)[0]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    return crop[torch.from_numpy(rng.permutation(3))]


def _warp(coverage: torch.Tensor, rng: np.random.Generator, size: int) -> torch.Tensor:
    """Stretch along a random axis and bend by a smooth random field (H,W) -> (H,W)."""
    theta = rng.uniform(0, math.pi)
    stretch = rng.uniform(0.75, 1.3)
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float32)
    affine = rot @ torch.diag(torch.tensor([1 / stretch, stretch], dtype=torch.float32)) @ rot.T
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    grid = torch.stack([xs, ys], -1).reshape(-1, 2) @ affine.T
    field = torch.from_numpy(rng.normal(0, 0.07, size=(1, 2, 4, 4)).astype(np.float32))
    field = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=True)[0]
    grid = grid.reshape(size, size, 2) + field.permute(1, 2, 0)
    out = F.grid_sample(
        coverage[None, None], grid[None], mode="bilinear", padding_mode="zeros",
        align_corners=True,
    )  # fmt: skip
    return out[0, 0].clamp(0, 1)


def _one(seed: int, split: int, index: int, size: int) -> tuple[Any, ...]:
    rng = np.random.default_rng([seed, split, index, GENERATOR_VERSION, 7919])
    scale = size / 64
    label = int(rng.integers(len(OBJECT_CLASSES)))
    area = float(rng.uniform(0.2, 0.4))
    angle = float(rng.uniform(0, 2 * np.pi))
    for _ in range(8):  # a warp can push the shape off the image: draw again
        shape = render_shape(label, size, area=area, angle=angle, rng=rng, supersample=2)
        cov = _warp(torch.from_numpy(shape), rng, size)
        mask = cov >= 0.5
        if int(mask.sum()) >= 0.05 * size * size:
            break
    alpha = _gaussian_blur(cov[None], 1.2 * scale)[0].clamp(0, 1)
    bg = _gaussian_blur(_crop(rng, size, 0.3, 0.9), rng.uniform(6.0, 10.0) * scale)
    mean = bg.mean((1, 2), keepdim=True)
    bg = (mean + (bg - mean) * rng.uniform(0.05, 0.2)).clamp(0, 1)
    tex = _crop(rng, size, 0.05, 0.2)
    grey = tex.mean(0, keepdim=True)
    grey = (grey - grey.mean()) / (grey.std() + 1e-6) * rng.uniform(0.35, 0.5)
    tint = torch.from_numpy(rng.uniform(0.1, 0.9, size=(3, 1, 1)).astype(np.float32))
    under = float((bg * _LUMA).sum(0)[mask].mean()) if bool(mask.any()) else 0.5
    tint = tint + (under - float((tint * _LUMA).sum()))
    obj = (tint + grey).clamp(0, 1)
    img = bg * (1 - alpha) + obj * alpha
    img8 = (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    m = mask.numpy()
    ys, xs = np.nonzero(m)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.int64)
    return img8, label, m.astype(np.uint8)[None], box


def _chunk(seed: int, split: int, start: int, stop: int, size: int) -> tuple[int, ShapesArrays]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; restored below (this may run in the caller)
    try:
        k = stop - start
        out = ShapesArrays(
            np.empty((k, 3, size, size), np.uint8), np.empty((k,), np.int64),
            np.empty((k, 1, size, size), np.uint8), np.empty((k, 4), np.int64),
        )  # fmt: skip
        for j, i in enumerate(range(start, stop)):
            out.images[j], out.labels[j], out.masks[j], out.boxes[j] = _one(seed, split, i, size)
    finally:
        torch.set_num_threads(threads)
    return start, out


def generate_objects(
    n: int, *, size: int = 64, seed: int = 0, split: int = 0, workers: int = 0
) -> ShapesArrays:
    """Generate ``n`` samples of ``objects`` (see the module docstring).

    Args:
        n: number of samples.
        size: image side in pixels (>= 32; 64 by default, 96 and 224 work).
        seed: base seed; ``split`` separates train (0) and test (1) streams.
        workers: processes to use (0: all cores, 1: in-process).

    Example:
        >>> arr = generate_objects(2, size=32, workers=1)
        >>> arr.images.shape, arr.masks.shape, arr.boxes.shape
        ((2, 3, 32, 32), (2, 1, 32, 32), (2, 4))
    """
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    if size < 32:
        raise ValueError(f"objects needs size >= 32 pixels; got {size}")
    import multiprocessing as mp
    import os

    procs = workers or (os.cpu_count() or 1)
    if procs > 1 and n >= 256 and "fork" in mp.get_all_start_methods():
        from concurrent.futures import ProcessPoolExecutor

        out = ShapesArrays(
            np.empty((n, 3, size, size), np.uint8), np.empty((n,), np.int64),
            np.empty((n, 1, size, size), np.uint8), np.empty((n, 4), np.int64),
        )  # fmt: skip
        chunks = [c for c in np.array_split(np.arange(n), procs * 4) if len(c)]
        with ProcessPoolExecutor(procs, mp_context=mp.get_context("fork")) as ex:
            futures = [
                ex.submit(_chunk, seed, split, int(c[0]), int(c[-1]) + 1, size) for c in chunks
            ]
            for fut in futures:
                start, part = fut.result()
                stop = start + len(part.labels)
                out.images[start:stop], out.labels[start:stop] = part.images, part.labels
                out.masks[start:stop], out.boxes[start:stop] = part.masks, part.boxes
        return out
    return _chunk(seed, split, 0, n, size)[1]
