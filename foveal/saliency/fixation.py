"""Fixation prediction: where a human would look, as a density over pixels summing to 1.

Tong et al. 2020 partitions images into foreground/background with a fixation-density model
(DeepGaze II) and measures the foreground score as the density mass inside the foreground.
DeepGaze's weights are not distributed through a package index, so they cannot be a default;
two sources are offered instead:

- :class:`SpectralResidual` — the spectral-residual model of Hou & Zhang (2007), in OpenCV's
  variant (``cv2.saliency.StaticSaliencySpectralResidual``), written here in torch
  (``torch.fft``) so that it runs batched on any device and is differentiable with respect to
  the image — which the dual-perturbation attack needs when it maximises the foreground score.
  No library offers a differentiable version; OpenCV's serves as the reference in the tests.
- :class:`DensityModel` — plugs in any ``nn.Module`` that maps images to a density or a
  log-density (for instance a DeepGaze model the user has loaded).

Both return maps (N,1,H,W) that are non-negative and sum to 1 per image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foveal.saliency.base import METHODS, SaliencyMethod

__all__ = ["DensityModel", "SpectralResidual", "gaussian_blur", "spectral_residual"]

# ITU-R BT.601 luma weights, as OpenCV's RGB->grey conversion.
_LUMA = (0.299, 0.587, 0.114)


def _gaussian_kernel1d(
    size: int, sigma: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(
    maps: torch.Tensor, sigma: float, *, size: int | None = None, mode: str = "reflect"
) -> torch.Tensor:
    """Separable Gaussian blur of a (N,C,H,W) tensor (differentiable).

    Args:
        maps: (N,C,H,W) tensor.
        sigma: standard deviation in pixels (> 0).
        size: odd kernel size (default ``2 * ceil(3 sigma) + 1``, capped by the image size).
        mode: border handling for ``F.pad`` (``"reflect"`` is OpenCV's ``BORDER_REFLECT_101``).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    if size is None:
        size = 2 * math.ceil(3 * sigma) + 1
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer; got {size}")
    n, c, h, w = maps.shape
    k = _gaussian_kernel1d(size, sigma, maps.device, maps.dtype)
    out = maps.reshape(n * c, 1, h, w)
    ph = min(size // 2, h - 1) if mode == "reflect" else size // 2
    pw = min(size // 2, w - 1) if mode == "reflect" else size // 2
    kh = k[size // 2 - ph : size // 2 + ph + 1]
    kw = k[size // 2 - pw : size // 2 + pw + 1]
    out = F.pad(out, (0, 0, ph, ph), mode=mode)
    out = F.conv2d(out, (kh / kh.sum()).view(1, 1, -1, 1))
    out = F.pad(out, (pw, pw, 0, 0), mode=mode)
    out = F.conv2d(out, (kw / kw.sum()).view(1, 1, 1, -1))
    return out.reshape(n, c, h, w)


def _to_grey(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    if images.shape[1] == 3:
        w = torch.tensor(_LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images * w).sum(dim=1, keepdim=True)
    return images.mean(dim=1, keepdim=True)


def spectral_residual(
    images: torch.Tensor,
    *,
    resolution: int = 64,
    blur_sigma: float = 8.0,
    blur_size: int = 5,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Spectral-residual fixation density (OpenCV's variant), differentiable, batched.

    Steps per image: grey (BT.601 luma), bilinear resize to ``resolution`` squared, 2-D DFT
    ``F``; log-amplitude ``L = log |F|``; residual ``R = L - mean3x3(L)``; inverse DFT of
    ``exp(R) * F / |F|`` (the phase is kept); magnitude; Gaussian blur (``blur_size`` squared
    kernel, ``blur_sigma``); square; bilinear resize back; divide by the sum. ``eps`` keeps
    the logarithm and the phase finite (and their gradients) where ``|F| = 0``.

    OpenCV rounds the grey image and the resized grid to uint8; this version keeps them real
    (to stay differentiable). On images of 64 pixels and more the two agree closely (Pearson
    correlation > 0.99 on ``shapes``); on smaller, low-contrast images the rounding alone can
    lower the agreement to about 0.75.

    Args:
        images: (N,C,H,W) in [0,1] (C = 3 is converted to grey; C = 1 used as is; other C
            are averaged).
        resolution: side of the working grid (OpenCV: 64).
        blur_sigma, blur_size: the Gaussian blur of the saliency magnitude (OpenCV: 8, 5x5).
        eps: floor of ``|F|``.

    Returns:
        (N,1,H,W) densities, non-negative, each summing to 1.

    Example:
        >>> d = spectral_residual(torch.rand(2, 3, 32, 32))
        >>> torch.allclose(d.sum(dim=(1, 2, 3)), torch.ones(2))
        True
    """
    if resolution < 4:
        raise ValueError(f"resolution must be >= 4; got {resolution}")
    h, w = images.shape[2:]
    # Computed in the images' precision (float32 for float32 or lower, float64 for float64).
    grey = _to_grey(images if images.dtype == torch.float64 else images.float()) * 255.0
    dtype, device = grey.dtype, grey.device
    # Every linear, separable stage (the two bilinear resizes, the 3x3 mean with reflected
    # borders, the Gaussian blur) is applied as a pair of small cached matrices: two matrix
    # products per stage instead of convolutions on one-channel maps (which dominated the
    # cost, about 60%, on 64x64 grids).
    down_h = _resize_matrix(h, resolution, dtype, device)
    down_w = _resize_matrix(w, resolution, dtype, device)
    small = down_h @ grey.squeeze(1) @ down_w.T
    box = _box3_matrix(resolution, dtype, device)
    blur = _blur_matrix(resolution, blur_sigma, blur_size, dtype, device)
    up_h = _resize_matrix(resolution, h, dtype, device)
    up_w = _resize_matrix(resolution, w, dtype, device)
    return _SpectralCore.apply(small, box, blur, up_h, up_w, eps).unsqueeze(1)


class _SpectralCore(torch.autograd.Function):
    """Grid (N,R,R) -> density (N,h,w): the non-linear middle of the spectral residual.

    Forward: ``F = fft2(s)``; ``L = log sqrt(|F|^2 + eps^2)``; ``w = exp(-box L box^T)`` (the
    residual ``exp(L - mean3x3(L)) F / |F|`` equals ``F w``: the amplitude cancels);
    ``b = ifft2(F w)``; ``a = sqrt(|b|^2 + eps^2)``; ``q = (blur a blur^T)^2``; ``v = up q up^T``;
    ``d = v / sum(v)``. Every linear separable stage is a pair of small matrices.

    The backward is written out (real adjoints of each stage; the DFT's adjoint is ``R^2``
    times its inverse) because autograd's generic complex backward costs about three times the
    forward here, and the dual-perturbation attack evaluates this at every step. Checked
    against finite differences in the tests (``torch.autograd.gradcheck``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        small: torch.Tensor,
        box: torch.Tensor,
        blur: torch.Tensor,
        up_h: torch.Tensor,
        up_w: torch.Tensor,
        eps: float,
    ) -> torch.Tensor:
        spec = torch.fft.fft2(small)
        power = (spec * spec.conj()).real.add(eps**2)
        weight = torch.exp(-(box @ (0.5 * torch.log(power)) @ box.T))
        back = torch.fft.ifft2(spec * weight)
        amp = (back * back.conj()).real.add(eps**2).sqrt_()
        blurred = blur @ amp @ blur.T
        sal = blurred.square()
        # Dividing by the maximum keeps the numbers in range; the division by the sum below
        # cancels it, so it is a constant for the gradient.
        scale = sal.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)
        big = up_h @ (sal / scale) @ up_w.T
        total = big.sum(dim=(1, 2), keepdim=True).clamp_min(1e-30)
        out = big / total
        ctx.save_for_backward(spec, power, weight, back, amp, blurred, scale, total, out)
        ctx.mats = (box, blur, up_h, up_w)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        spec, power, weight, back, amp, blurred, scale, total, out = ctx.saved_tensors
        box, blur, up_h, up_w = ctx.mats
        r2 = spec.shape[-1] * spec.shape[-2]
        # Complex operations cost several times their real counterparts here, so every
        # constant factor is folded into a real tensor before it meets a complex one.
        g_big = grad_out - (grad_out * out).sum(dim=(1, 2), keepdim=True)
        g_sal = up_h.T @ g_big @ up_w
        g_amp = blur.T @ (blurred * g_sal) @ blur
        g_y = torch.fft.fft2(back * (g_amp * (2.0 / r2) / (amp * total * scale)))
        g_log = box.T @ (-(g_y * spec.conj()).real * weight) @ box
        g_spec = g_y * weight + spec * (g_log / power)
        g_small = torch.fft.ifft2(g_spec).real * r2
        return g_small, None, None, None, None, None


def _operator_matrix(
    n: int, apply: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The (m, n) matrix of a linear 1-D operator, by applying it to the identity's rows."""
    return apply(torch.eye(n, dtype=torch.float64).view(n, 1, 1, n))[:, 0, 0, :].T.to(
        device=device, dtype=dtype
    )


@functools.lru_cache(maxsize=64)
def _resize_matrix_cpu64(n_in: int, n_out: int) -> torch.Tensor:
    return _operator_matrix(
        n_in,
        lambda e: F.interpolate(e, size=(1, n_out), mode="bilinear", align_corners=False),
        torch.float64,
        torch.device("cpu"),
    )


@functools.lru_cache(maxsize=64)
def _box3_matrix_cpu64(n: int) -> torch.Tensor:
    def box(e: torch.Tensor) -> torch.Tensor:
        return F.avg_pool1d(F.pad(e[:, :, 0], (1, 1), mode="reflect"), 3, stride=1).unsqueeze(2)

    return _operator_matrix(n, box, torch.float64, torch.device("cpu"))


@functools.lru_cache(maxsize=64)
def _blur_matrix_cpu64(n: int, sigma: float, size: int) -> torch.Tensor:
    def blur(e: torch.Tensor) -> torch.Tensor:
        # A (n, 1, n, 1) column layout blurs along the height, which is the 1-D operator.
        return gaussian_blur(e.transpose(2, 3), sigma, size=size).transpose(2, 3)

    return _operator_matrix(n, blur, torch.float64, torch.device("cpu"))


_DEVICE_CACHE: dict[tuple[object, ...], torch.Tensor] = {}


def _cached(key: tuple[object, ...], make: Callable[[], torch.Tensor]) -> torch.Tensor:
    mat = _DEVICE_CACHE.get(key)
    if mat is None:
        if len(_DEVICE_CACHE) > 256:
            _DEVICE_CACHE.clear()
        mat = _DEVICE_CACHE[key] = make()
    return mat


def _resize_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = ("resize", n_in, n_out, dtype, str(device))
    return _cached(key, lambda: _resize_matrix_cpu64(n_in, n_out).to(device=device, dtype=dtype))


def _box3_matrix(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = ("box3", n, dtype, str(device))
    return _cached(key, lambda: _box3_matrix_cpu64(n).to(device=device, dtype=dtype))


def _blur_matrix(
    n: int, sigma: float, size: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    key = ("blur", n, float(sigma), int(size), dtype, str(device))
    return _cached(
        key, lambda: _blur_matrix_cpu64(n, float(sigma), int(size)).to(device=device, dtype=dtype)
    )


@METHODS.register("spectral-residual", help="spectral-residual fixation density (Hou & Zhang)")
class SpectralResidual(SaliencyMethod):
    """Spectral-residual fixation prediction (no classifier): a density summing to 1 per image.

    See :func:`spectral_residual` for the steps. ``target`` is ignored.

    Args:
        resolution: side of the working grid (default 64, as OpenCV).
        blur_sigma: Gaussian blur sigma on the working grid (default 8, as OpenCV).
        blur_size: Gaussian kernel size (default 5, as OpenCV).
        normalize: min-max normalise each map instead of returning a density.
        differentiable: keep the graph from the images to the density (for attacks).

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W), each summing to 1.

    Example:
        >>> sr = SpectralResidual(differentiable=True)
        >>> x = torch.rand(1, 3, 32, 32, requires_grad=True)
        >>> sr(x)[..., :8, :8].sum().backward()
        >>> bool(x.grad.abs().sum() > 0)
        True
    """

    needs_model = False
    supports_differentiable = True

    def __init__(
        self,
        *,
        resolution: int = 64,
        blur_sigma: float = 8.0,
        blur_size: int = 5,
        normalize: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(None, normalize=normalize, differentiable=differentiable)
        if resolution < 4:
            raise ValueError(f"resolution must be >= 4; got {resolution}")
        self.resolution = int(resolution)
        self.blur_sigma = float(blur_sigma)
        self.blur_size = int(blur_size)

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        with torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled()):
            return spectral_residual(
                images,
                resolution=self.resolution,
                blur_sigma=self.blur_sigma,
                blur_size=self.blur_size,
            )

    def __repr__(self) -> str:
        return f"SpectralResidual(resolution={self.resolution})"


@METHODS.register("density", help="any user module mapping images to a (log-)density")
class DensityModel(SaliencyMethod):
    """Plug in a fixation model: any module mapping images to a density or log-density.

    The module's output (N,1,H,W) or (N,H,W) — or any spatial size, resized bilinearly — is
    exponentiated when ``log_density`` is True, then renormalised to sum to 1 per image.

    Args:
        module: ``nn.Module`` (or callable) taking (N,C,H,W) images in [0,1].
        log_density: whether the module returns log-densities (as DeepGaze does; default True).
        normalize: min-max normalise each map instead of returning a density.
        differentiable: keep the graph from the images to the density.

    Shape:
        images (N,C,H,W) -> maps (N,1,H,W), each summing to 1.

    Example:
        >>> uniform = lambda x: torch.zeros(x.shape[0], 1, *x.shape[2:])
        >>> DensityModel(uniform)(torch.rand(1, 3, 4, 4)).flatten()[:2]
        tensor([0.0625, 0.0625])
    """

    needs_model = False
    supports_differentiable = True

    def __init__(
        self,
        module: Callable[[torch.Tensor], torch.Tensor],
        *,
        log_density: bool = True,
        normalize: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(None, normalize=normalize, differentiable=differentiable)
        if not callable(module):
            raise TypeError(f"module must be callable; got {type(module).__name__}")
        self.module: Callable[[torch.Tensor], torch.Tensor] = module
        self.log_density: bool = bool(log_density)

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        n, _, h, w = images.shape
        with torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled()):
            mod = self.module
            training = isinstance(mod, nn.Module) and mod.training
            if isinstance(mod, nn.Module):
                mod.eval()
            try:
                out = mod(images)
            finally:
                if isinstance(mod, nn.Module):
                    mod.train(training)
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"the density module must return a tensor; got {type(out)}")
            if out.ndim == 3:
                out = out.unsqueeze(1)
            if out.ndim != 4 or out.shape[0] != n or out.shape[1] != 1:
                raise ValueError(
                    f"the density module must return (N,1,h,w) or (N,h,w) with N={n}; got "
                    f"shape {tuple(out.shape)}"
                )
            if self.log_density:
                flat = out.flatten(1)
                out = torch.softmax(flat, dim=1).view_as(out)
            elif bool((out < 0).any()):
                raise ValueError(
                    f"the density module returned negative values (min {float(out.min()):g}); "
                    "pass log_density=True if it returns log-densities"
                )
            if out.shape[2:] != (h, w):
                out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
            return out / out.sum(dim=(2, 3), keepdim=True).clamp_min(1e-30)
