"""Input-transform defenses, each a wrapper ``model -> model`` for gray-box evaluation.

Transforms (all keep shape and the [0,1] range):

- ``resize``: down-sample by ``gamma`` and back (bilinear), Dong et al.'s (2020) resizing defense;
- ``jpeg``: JPEG at quality ``q`` (Pillow's libjpeg encoder/decoder);
- ``dnn-jpeg``: the DNN-oriented JPEG of feature distillation (Liu et al., CVPR 2019), written
  here in torch because no maintained package implements it: YCbCr without chroma subsampling, 8x8
  orthonormal DCT, a quantisation table that keeps the 15 lowest zig-zag frequencies (step 1)
  and quantises the rest with step ``1 + QS`` (QS = 40), libjpeg quality scaling;
- ``tvm``: total-variation minimisation (Guo et al., ICLR 2018): random pixel drop
  (keep probability ``1 - p``) and the masked TV reconstruction
  ``argmin_z 1/2 ||X o (z - x)||^2 + lambda_TV * TV(z)`` solved per channel with the
  Chambolle-Pock primal-dual algorithm in torch (scikit-image's TV denoisers take no mask);
- ``bit-depth``: quantisation to ``bits`` bits per channel;
- ``avg-pool``, ``max-pool``, ``median``: k x k filters with stride 1 and same-size output
  (reflect padding).

:class:`InputTransform` applies one in front of a model. With ``bpda=True`` (the default for
non-differentiable transforms) the backward pass is the identity (BPDA, Athalye et al. 2018),
so white-box attacks can go through it; differentiable transforms keep their true gradient
unless ``bpda=True`` is asked for.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from foveal._validation import check_images
from foveal.registry import Registry

__all__ = [
    "TRANSFORMS",
    "TVM",
    "BitDepth",
    "DnnJpeg",
    "InputTransform",
    "Jpeg",
    "MedianFilter",
    "Pool",
    "Resize",
    "make_transform",
]

TRANSFORMS: Registry[Callable[..., nn.Module]] = Registry("input transform")


class _Transform(nn.Module, abc.ABC):
    """An image-to-image transform keeping shape and the [0,1] range."""

    differentiable = True

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform a batch (N,C,H,W)."""


@TRANSFORMS.register("resize", help="down-sample by gamma and back (bilinear)")
class Resize(_Transform):
    """Resize to ``round(gamma * H)`` and back to H (bilinear, antialiased on the way down)."""

    def __init__(self, gamma: float = 0.5) -> None:
        super().__init__()
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1]; got {gamma:g}")
        self.gamma = float(gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        small = (max(1, round(h * self.gamma)), max(1, round(w * self.gamma)))
        y = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
        return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


@TRANSFORMS.register("jpeg", help="JPEG compression at quality q")
class Jpeg(_Transform):
    """Standard JPEG (4:2:0 chroma subsampling as libjpeg does) at ``quality`` in [1, 100]."""

    differentiable = False

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"quality must lie in [1, 100]; got {quality}")
        self.quality = int(quality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import io

        import numpy as np
        from PIL import Image

        device, c = x.device, x.shape[1]
        u8 = (x.detach() * 255).round().clamp(0, 255).to(torch.uint8).cpu()
        if c == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        out = []
        for img in u8.permute(0, 2, 3, 1).numpy():
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(img)).save(
                buf, format="JPEG", quality=self.quality
            )
            buf.seek(0)
            with Image.open(buf) as dec:
                out.append(torch.from_numpy(np.asarray(dec.convert("RGB")).copy()))
        y = torch.stack(out).permute(0, 3, 1, 2).to(device=device, dtype=x.dtype) / 255.0
        return y[:, :1] if c == 1 else y


_RGB2YCC = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_ZIGZAG_LOW = 4  # keep frequencies with u + v <= 4: the 15 lowest zig-zag positions


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m.float()


@TRANSFORMS.register("dnn-jpeg", help="DNN-oriented JPEG (feature distillation)")
class DnnJpeg(_Transform):
    """DNN-oriented JPEG: low frequencies kept exactly, high ones quantised with step 1 + QS."""

    differentiable = False

    def __init__(self, quality: int = 50, qs: float = 40.0) -> None:
        super().__init__()
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"quality must lie in [1, 100]; got {quality}")
        if qs < 0:
            raise ValueError(f"qs must be >= 0; got {qs:g}")
        u = torch.arange(8)
        band = ((u[:, None] + u[None, :]) > _ZIGZAG_LOW).float()
        table = band * qs + 1
        q = int(quality)
        scale = 5000 / q if q < 50 else 200 - 2 * q
        table = torch.floor((table * scale + 50) / 100).clamp_min(1)
        self.register_buffer("table", table)
        self.register_buffer("dct", _dct_matrix())

    table: torch.Tensor
    dct: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        img = (x.detach() * 255).round()
        if c == 1:
            img = img.expand(-1, 3, -1, -1)
        mat = _RGB2YCC.to(x.device)
        ycc = torch.einsum("ij,njhw->nihw", mat, img)
        ycc[:, 1:] += 128
        ph, pw = (-h) % 8, (-w) % 8
        ycc = F.pad(ycc, (0, pw, 0, ph), mode="replicate") - 128
        hh, ww = ycc.shape[-2:]
        blocks = ycc.reshape(n, 3, hh // 8, 8, ww // 8, 8).permute(0, 1, 2, 4, 3, 5)
        d = self.dct
        coef = d @ blocks @ d.T
        coef = torch.round(coef / self.table) * self.table
        rec = (d.T @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(n, 3, hh, ww) + 128
        rec = rec.round().clamp(0, 255)[..., :h, :w]
        rec[:, 1:] -= 128
        rgb = torch.einsum("ij,njhw->nihw", torch.linalg.inv(mat), rec)
        out = rgb.round().clamp(0, 255) / 255.0
        return (out[:, :1] if c == 1 else out).to(x.dtype)


@TRANSFORMS.register("bit-depth", help="reduce to `bits` bits per channel")
class BitDepth(_Transform):
    """``round(x * (2^b - 1)) / (2^b - 1)`` (feature squeezing's bit-depth reduction)."""

    differentiable = False

    def __init__(self, bits: int = 3) -> None:
        super().__init__()
        if not 1 <= int(bits) <= 8:
            raise ValueError(f"bits must lie in [1, 8]; got {bits}")
        self.levels = 2 ** int(bits) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels


def _pad_same(x: torch.Tensor, k: int) -> torch.Tensor:
    lo, hi = (k - 1) // 2, k // 2
    mode = "reflect" if min(x.shape[-2:]) > max(lo, hi) else "replicate"
    return F.pad(x, (lo, hi, lo, hi), mode=mode)


@TRANSFORMS.register("avg-pool", help="k x k average pooling, stride 1, same size")
class Pool(_Transform):
    """k x k average (or max) pooling with stride 1 and reflect padding (same output size)."""

    def __init__(self, k: int = 3, *, kind: str = "avg") -> None:
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        if kind not in ("avg", "max"):
            raise ValueError(f"kind must be 'avg' or 'max'; got {kind!r}")
        self.k, self.kind = int(k), kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = _pad_same(x, self.k)
        if self.kind == "avg":
            return F.avg_pool2d(p, self.k, stride=1)
        return F.max_pool2d(p, self.k, stride=1)


@TRANSFORMS.register("max-pool", help="k x k max pooling, stride 1, same size")
def _max_pool(k: int = 3) -> Pool:
    return Pool(k, kind="max")


@TRANSFORMS.register("median", help="k x k median filter, same size")
class MedianFilter(_Transform):
    """k x k median filter (stride 1, reflect padding); for even k the lower median."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        self.k = int(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        patches = F.unfold(_pad_same(x, self.k), self.k)  # (N, C*k*k, H*W)
        patches = patches.reshape(n, c, self.k * self.k, h * w)
        return patches.median(dim=2).values.reshape(n, c, h, w)


def _grad(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gx = torch.zeros_like(z)
    gy = torch.zeros_like(z)
    gx[..., :, :-1] = z[..., :, 1:] - z[..., :, :-1]
    gy[..., :-1, :] = z[..., 1:, :] - z[..., :-1, :]
    return gx, gy


def _div(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Negative adjoint of :func:`_grad`."""
    dx = torch.zeros_like(px)
    dy = torch.zeros_like(py)
    dx[..., :, 0] = px[..., :, 0]
    dx[..., :, 1:-1] = px[..., :, 1:-1] - px[..., :, :-2]
    dx[..., :, -1] = -px[..., :, -2]
    dy[..., 0, :] = py[..., 0, :]
    dy[..., 1:-1, :] = py[..., 1:-1, :] - py[..., :-2, :]
    dy[..., -1, :] = -py[..., -2, :]
    return dx + dy


def masked_tv(
    x: torch.Tensor, keep: torch.Tensor, *, weight: float = 0.03, iters: int = 100
) -> torch.Tensor:
    """``argmin_z 1/2 ||keep o (z - x)||^2 + weight * TV(z)`` per channel (Chambolle-Pock).

    Isotropic TV per channel; step sizes tau = sigma = 1/sqrt(8) (the gradient operator has
    norm <= sqrt(8)); over-relaxation theta = 1.
    """
    tau = sigma = 1.0 / math.sqrt(8.0)
    z = x * keep
    z_bar = z.clone()
    px = torch.zeros_like(x)
    py = torch.zeros_like(x)
    for _ in range(iters):
        gx, gy = _grad(z_bar)
        px, py = px + sigma * gx, py + sigma * gy
        norm = torch.sqrt(px * px + py * py).div(weight).clamp_min(1.0)
        px, py = px / norm, py / norm
        z_old = z
        v = z + tau * _div(px, py)
        z = (v + tau * keep * x) / (1 + tau * keep)
        z_bar = 2 * z - z_old
    return z.clamp(0, 1)


@TRANSFORMS.register("tvm", help="random pixel drop + masked total-variation reconstruction")
class TVM(_Transform):
    """Total-variation minimisation with pixel drop rate ``p`` (Guo et al., ICLR 2018).

    The Bernoulli keep-mask is drawn per pixel and channel from ``seed`` (a fresh draw on each
    call unless a seed is given).
    """

    differentiable = False

    def __init__(
        self, p: float = 0.5, weight: float = 0.03, iters: int = 100, seed: int | None = None
    ) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"p (drop rate) must lie in [0, 1); got {p:g}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0; got {weight:g}")
        self.p, self.weight, self.iters, self.seed = float(p), float(weight), int(iters), seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=x.device).manual_seed(self.seed)
        keep = (torch.rand(x.shape, generator=gen, device=x.device) >= self.p).to(x.dtype)
        with torch.no_grad():
            return masked_tv(x.detach(), keep, weight=self.weight, iters=self.iters)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class InputTransform(nn.Module):
    """``model(transform(x))``; with ``bpda`` the transform's backward is the identity.

    Args:
        model: the classifier (taking [0,1] pixels).
        transform: a transform module or a registered name (see ``TRANSFORMS``).
        bpda: identity backward through the transform; ``None`` (default) uses BPDA exactly
            for the non-differentiable transforms (JPEG, DNN-JPEG, TVM, bit depth).
        **kwargs: the transform's parameters when ``transform`` is a name.

    Example:
        >>> import foveal, torch
        >>> net = foveal.models.create("shapes-cnn")
        >>> defended = InputTransform(net, "jpeg", quality=75)
        >>> defended(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, model: nn.Module, transform: nn.Module | str, *, bpda: bool | None = None,
        **kwargs: object,
    ) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.transform = (
            make_transform(transform, **kwargs) if isinstance(transform, str) else transform
        )
        differentiable = getattr(self.transform, "differentiable", True)
        self.bpda = (not differentiable) if bpda is None else bool(bpda)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, "x")
        if self.bpda:
            with torch.no_grad():
                y = self.transform(x.detach())
            y = _StraightThrough.apply(x, y)
        else:
            y = self.transform(x)
        return self.model(y)


def make_transform(name: str, **kwargs: object) -> nn.Module:
    """Build a registered transform by name (e.g. ``make_transform("jpeg", quality=50)``)."""
    return TRANSFORMS.get(name)(**kwargs)
