"""Input validation shared by every part of foveal.

Errors name the argument and the observed value, so a user sees at once what was wrong:
``ValueError: images must lie in [0, 1]; observed min=0, max=255 (did you forget to divide by
255?)``. Nothing is clamped silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "check_eps",
    "check_images",
    "check_labels",
    "check_mask",
    "check_probability",
    "format_validation_error",
    "parse_fraction",
]

#: Error types whose message already names the key and the value (raised by foveal's own
#: validators, e.g. a recipe setting the method does not take).
SELF_DESCRIBING = frozenset({"unknown_setting", "unknown_recipe"})


def check_images(images: object, name: str = "images", *, ndim: int = 4) -> torch.Tensor:
    """Check that ``images`` is a floating tensor of shape (N,C,H,W) with values in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor with values in [0, 1]; got dtype "
            f"{images.dtype} (convert uint8 images with x.float() / 255)"
        )
    if images.ndim != ndim:
        want = "(N,C,H,W)" if ndim == 4 else f"{ndim} dimensions"
        raise ValueError(f"{name} must have shape {want}; got shape {tuple(images.shape)}")
    if images.numel() == 0:
        return images
    with torch.no_grad():
        low, high = torch.aminmax(images)  # one pass; NaN propagates to both
        lo, hi = float(low), float(high)
        if math.isnan(lo) or math.isnan(hi):
            count = int(torch.isnan(images).sum())
            raise ValueError(f"{name} contains NaN ({count} values)")
    if lo < 0.0 or hi > 1.0:
        hint = " (did you forget to divide by 255?)" if hi > 1.0 and hi <= 255.0 else ""
        raise ValueError(f"{name} must lie in [0, 1]; observed min={lo:g}, max={hi:g}{hint}")
    return images


def check_labels(
    labels: object, n: int, num_classes: int | None = None, name: str = "labels"
) -> torch.Tensor:
    """Check integer labels of shape (n,), optionally within ``[0, num_classes)``."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(labels).__name__}")
    if labels.dtype in (torch.bool,) or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"{name} must be an integer tensor; got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},); got shape {tuple(labels.shape)}")
    if n == 0:
        return labels
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise ValueError(f"{name} must be >= 0; observed min={lo}")
    if num_classes is not None and hi >= num_classes:
        raise ValueError(
            f"{name} must be < the number of classes ({num_classes}); observed max={hi}"
        )
    return labels


def check_mask(
    mask: object, images: torch.Tensor, name: str = "mask", *, binary: bool = True
) -> torch.Tensor:
    """Check a mask of shape (N,1,H,W) or (N,C,H,W) matching ``images`` (N,C,H,W)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(mask).__name__}")
    n, c, h, w = images.shape
    if (
        mask.ndim != 4
        or mask.shape[0] != n
        or mask.shape[2:] != (h, w)
        or mask.shape[1]
        not in (
            1,
            c,
        )
    ):
        raise ValueError(
            f"{name} must have shape ({n},1,{h},{w}) or ({n},{c},{h},{w}) to match images; "
            f"got shape {tuple(mask.shape)}"
        )
    if binary and mask.numel():
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            sample = float(mask[bad].flatten()[0])
            raise ValueError(f"{name} must be binary (0/1); found value {sample:g}")
    return mask


def check_eps(eps: object, name: str = "eps") -> float:
    """Check a non-negative finite budget and return it as a float."""
    try:
        value = float(eps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {eps!r}") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value:g}")
    return value


def check_probability(p: object, name: str) -> float:
    """Check a number in [0, 1]."""
    value = check_eps(p, name)
    if value > 1:
        raise ValueError(f"{name} must lie in [0, 1]; got {value:g}")
    return value


def parse_fraction(text: str | float | int, name: str = "value") -> float:
    """Parse ``"8/255"``, ``"0.03"`` or a number into a float (used by the CLI and configs)."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            return float(num) / float(den)
        return float(s)
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"{name} must be a number or a fraction like 8/255; got {text!r}"
        ) from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the key: ``training.lr: Input should be greater than 0``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] in SELF_DESCRIBING:
            lines.append(f"{key}: {msg}" if err["loc"] else msg)
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{key}: {msg} (got {err.get('input')!r})")
    return "; ".join(lines)


def as_sequence(value: object) -> Sequence[object]:
    if isinstance(value, (list, tuple)):
        return value
    return [value]
