"""``shapes``: the built-in salient-object dataset, generated procedurally, no downloads.

Ten shape classes (circle, square, triangle, star, cross, ring, ellipse, hexagon, arrow, heart)
are drawn with a random colour, scale (the object covers 15-50% of the image), position and
rotation over a background cut from the natural images bundled with scikit-image, with colour
jitter and pixel noise. Backgrounds are chosen independently of the label, so they are rich but
carry no label information; the object is the only evidence, and its exact mask and box are
known — which is what saliency-aware attacks, defenses and localisation need.

Every sample is generated from its own random stream ``(seed, split, index)``: the data are
identical for the same parameters on any machine, and the first ``k`` samples of a larger set
equal a set of size ``k``.

Rendering: each shape is a polygon (a ring is two contours), rasterised with
``skimage.draw.polygon`` on a 4x super-sampled grid; the block average gives the anti-aliased
coverage ``alpha`` and the mask is ``alpha >= 0.5``. Boxes are ``(x0, y0, x1, y1)`` in pixels
with ``x1``/``y1`` exclusive, the tight box of the mask.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SHAPE_CLASSES", "generate_shapes", "render_shape"]

SHAPE_CLASSES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "ellipse",
    "hexagon",
    "arrow",
    "heart",
)

GENERATOR_VERSION = 1
_SUPERSAMPLE = 4
_MIN_AREA, _MAX_AREA = 0.15, 0.50


def _regular(n: int, r: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


@functools.lru_cache(maxsize=1)
def _contours() -> dict[str, list[np.ndarray]]:
    """Unit-size contours (x, y) of each class, centred near the origin."""
    star = np.empty((10, 2))
    outer, inner = _regular(5, 1.0, -np.pi / 2), _regular(5, 0.42, -np.pi / 2 + np.pi / 5)
    star[0::2], star[1::2] = outer, inner
    a, b = 0.33, 1.0
    cross = np.array(
        [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a],
         [-b, -a], [-a, -a]]
    )  # fmt: skip
    arrow = np.array(
        [[-1.0, -0.28], [0.15, -0.28], [0.15, -0.7], [1.0, 0.0], [0.15, 0.7], [0.15, 0.28],
         [-1.0, 0.28]]
    )  # fmt: skip
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    hx = 16 * np.sin(t) ** 3
    hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    heart = np.stack([hx, hy + 2.5], axis=1) / 17.0
    return {
        "circle": [_regular(48)],
        "square": [_regular(4, 1.0, np.pi / 4)],
        "triangle": [_regular(3, 1.0, -np.pi / 2) + np.array([0.0, 0.2])],
        "star": [star],
        "cross": [cross],
        "ring": [_regular(48), _regular(48, 0.55)],
        "ellipse": [_regular(48) * np.array([1.0, 0.5])],
        "hexagon": [_regular(6)],
        "arrow": [arrow],
        "heart": [heart],
    }


def _shoelace(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@functools.lru_cache(maxsize=1)
def _unit_areas() -> dict[str, float]:
    areas = {}
    for name, contours in _contours().items():
        area = _shoelace(contours[0])
        for hole in contours[1:]:
            area -= _shoelace(hole)
        areas[name] = area
    return areas


def render_shape(
    label: int, size: int, *, area: float, angle: float, centre: tuple[float, float] | None = None,
    rng: np.random.Generator | None = None, supersample: int = _SUPERSAMPLE,
) -> np.ndarray:  # fmt: skip
    """Anti-aliased coverage (H,W) in [0,1] of shape ``label`` covering ``area`` of the image.

    ``centre`` (x, y) in pixels; when None a random position keeping the shape inside is drawn
    from ``rng``. ``supersample``: the rasterisation grid per pixel side (coverage levels).
    """
    from skimage.draw import polygon

    name = SHAPE_CLASSES[label]
    contours = _contours()[name]
    scale = math.sqrt(area * size * size / _unit_areas()[name])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = [c @ rot.T * scale for c in contours]
    lo, hi = pts[0].min(axis=0), pts[0].max(axis=0)
    extent = float((hi - lo).max())
    if extent > size - 2:  # too large at this angle: shrink to fit
        shrink = (size - 2) / extent
        pts = [p * shrink for p in pts]
        lo, hi = lo * shrink, hi * shrink
    if centre is None:
        gen = rng if rng is not None else np.random.default_rng()
        cx = gen.uniform(-lo[0] + 0.5, size - hi[0] - 0.5)
        cy = gen.uniform(-lo[1] + 0.5, size - hi[1] - 0.5)
    else:
        cx, cy = centre
    s = supersample
    canvas = np.zeros((size * s, size * s), dtype=np.float32)
    for k, p in enumerate(pts):
        rr, cc = polygon((p[:, 1] + cy) * s - 0.5, (p[:, 0] + cx) * s - 0.5, canvas.shape)
        canvas[rr, cc] = 1.0 if k == 0 else 0.0
    return canvas.reshape(size, s, size, s).mean(axis=(1, 3))


@functools.lru_cache(maxsize=1)
def _background_pool() -> list[torch.Tensor]:
    """Natural images bundled inside scikit-image (no download), as (3,H,W) float tensors."""
    import skimage.data as sd

    names = [
        "astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field",
        "immunohistochemistry", "moon", "rocket", "brick", "grass", "gravel", "retina", "clock",
        "page", "text",
    ]  # fmt: skip
    pool = []
    for name in names:
        loader = getattr(sd, name, None)
        if loader is None:
            continue
        try:
            img = np.asarray(loader())
        except Exception:
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = img[..., :3].astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        # Keep the pool small: at most 384 px on the short side.
        short = min(t.shape[1:])
        if short > 384:
            h, w = (round(d * 384 / short) for d in t.shape[1:])
            t = F.interpolate(t[None], size=(h, w), mode="bilinear", antialias=True)[0]
        pool.append(t.contiguous())
    if not pool:
        raise RuntimeError("no scikit-image sample images could be loaded for backgrounds")
    return pool


def _background(rng: np.random.Generator, size: int) -> torch.Tensor:
    pool = _background_pool()
    src = pool[int(rng.integers(len(pool)))]
    _, h, w = src.shape
    side = max(8, int(min(h, w) * rng.uniform(0.15, 0.9)))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = src[:, y0 : y0 + side, x0 : x0 + side]
    crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True)[0]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    crop = crop[torch.from_numpy(rng.permutation(3))]
    gain = torch.from_numpy(rng.uniform(0.6, 1.3, size=(3, 1, 1)).astype(np.float32))
    shift = float(rng.uniform(-0.15, 0.15))
    return (crop * gain + shift).clamp(0, 1)


@dataclass
class ShapesArrays:
    images: np.ndarray  # (N,3,H,W) uint8
    labels: np.ndarray  # (N,) int64
    masks: np.ndarray  # (N,1,H,W) uint8 in {0,1}
    boxes: np.ndarray  # (N,4) int64 (x0, y0, x1, y1), x1/y1 exclusive
    alphas: np.ndarray | None = None  # (N,1,H,W) float32 coverage, when asked for


def _one(seed: int, split: int, index: int, size: int) -> tuple[Any, ...]:
    rng = np.random.default_rng([seed, split, index, GENERATOR_VERSION])
    label = int(rng.integers(len(SHAPE_CLASSES)))
    area = float(rng.uniform(_MIN_AREA, _MAX_AREA))
    angle = float(rng.uniform(0, 2 * np.pi))
    alpha = render_shape(label, size, area=area, angle=angle, rng=rng)
    bg = _background(rng, size).numpy()
    m = alpha >= 0.5
    local = bg[:, m].mean(axis=1) if m.any() else bg.reshape(3, -1).mean(axis=1)
    best, best_d = None, -1.0
    for _ in range(8):  # pick a colour that stands out from the background under the object
        colour = rng.uniform(0, 1, size=3).astype(np.float32)
        d = float(np.linalg.norm(colour - local))
        if d > best_d:
            best, best_d = colour, d
        if d >= 0.45:
            break
    assert best is not None
    shade = 1.0 + 0.12 * np.linspace(-1, 1, size, dtype=np.float32)[None, :] * rng.choice([-1, 1])
    obj = np.clip(best[:, None, None] * shade[None], 0, 1)
    img = bg * (1 - alpha[None]) + obj * alpha[None]
    img = img + rng.normal(0, 0.03, size=img.shape).astype(np.float32)
    img8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(m)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.int64)
    return img8, label, m.astype(np.uint8)[None], box, alpha[None].astype(np.float32)


def generate_shapes(
    n: int, *, size: int = 32, seed: int = 0, split: int = 0, return_alpha: bool = False,
    workers: int = 0,
) -> ShapesArrays:  # fmt: skip
    """Generate ``n`` samples of ``shapes`` (see the module docstring).

    Args:
        n: number of samples.
        size: image side in pixels (>= 16).
        seed: base seed; ``split`` separates train (0) and test (1) streams.
        return_alpha: also return the anti-aliased coverage of each shape.
        workers: processes to use (0: all cores, 1: in-process).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels; got {size}")
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    labels = np.empty((n,), dtype=np.int64)
    masks = np.empty((n, 1, size, size), dtype=np.uint8)
    boxes = np.empty((n, 4), dtype=np.int64)
    alphas = np.empty((n, 1, size, size), dtype=np.float32) if return_alpha else None
    import multiprocessing as mp
    import os

    procs = workers or (os.cpu_count() or 1)
    # Worker processes are forked (they need no re-import of the caller's main module); where
    # fork is unavailable generation runs in-process.
    if procs > 1 and n >= 512 and "fork" in mp.get_all_start_methods():
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        chunks = np.array_split(np.arange(n), procs * 4)
        with ProcessPoolExecutor(procs, mp_context=get_context("fork")) as ex:
            futures = [
                ex.submit(_chunk, seed, split, int(c[0]), int(c[-1]) + 1, size, return_alpha)
                for c in chunks
                if len(c)
            ]
            for fut in futures:
                start, part = fut.result()
                stop = start + len(part.labels)
                images[start:stop], labels[start:stop] = part.images, part.labels
                masks[start:stop], boxes[start:stop] = part.masks, part.boxes
                if alphas is not None and part.alphas is not None:
                    alphas[start:stop] = part.alphas
        return ShapesArrays(images, labels, masks, boxes, alphas)
    for i in range(n):
        img, lab, m, box, alpha = _one(seed, split, i, size)
        images[i], labels[i], masks[i], boxes[i] = img, lab, m, box
        if alphas is not None:
            alphas[i] = alpha
    return ShapesArrays(images, labels, masks, boxes, alphas)


def _chunk(
    seed: int, split: int, start: int, stop: int, size: int, return_alpha: bool
) -> tuple[int, ShapesArrays]:
    torch.set_num_threads(1)
    k = stop - start
    out = ShapesArrays(
        np.empty((k, 3, size, size), np.uint8), np.empty((k,), np.int64),
        np.empty((k, 1, size, size), np.uint8), np.empty((k, 4), np.int64),
        np.empty((k, 1, size, size), np.float32) if return_alpha else None,
    )  # fmt: skip
    for j, i in enumerate(range(start, stop)):
        img, lab, m, box, alpha = _one(seed, split, i, size)
        out.images[j], out.labels[j], out.masks[j], out.boxes[j] = img, lab, m, box
        if out.alphas is not None:
            out.alphas[j] = alpha
    return start, out
