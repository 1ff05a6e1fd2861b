"""The perturbation sets: Lp balls, region budgets, eps maps and frozen pixels.

Each class here only *describes* a set and validates that description; binding it to a batch
(:meth:`Threat.bind`) returns one of the two geometries in :mod:`foveal.threats.geometry`:

================================  ==========================================================
set                               geometry
================================  ==========================================================
``Linf(eps)``                     eps map ``eps`` (scalar or per sample) -> clamp
``L2(eps)``                       one L2 ball -> exact ball-and-box projection
``RegionBudget(..., "linf")``     eps map ``sum_r eps_r * mask_r`` -> clamp
``RegionBudget(..., "l2")``       one L2 ball per region -> exact projection per region
``EpsMap(eps_map)``               per-pixel Linf budget (PART) -> clamp
``dual(mask, eps_fg, eps_bg)``    region budget {foreground: eps_F, background: eps_B} (Tong et al.
                                  2020)
``frozen(mask, eps)``             region budget {free: eps, frozen: 0} (SIP-AT, Redgrave & Czajka
                                  2024, Eq. 9)
================================  ==========================================================

Budgets (``eps``) are a number or a per-sample tensor (N,); all must be finite and >= 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from foveal._validation import check_eps, check_mask
from foveal.threats.base import BoundThreat, Threat
from foveal.threats.geometry import BoundL2Regions, BoundLinfMap

__all__ = [
    "L2",
    "EpsLike",
    "EpsMap",
    "Linf",
    "RegionBudget",
    "ball",
    "box_threat",
    "dual",
    "frozen",
    "parse_norm",
]

#: A budget: a number, or a per-sample tensor of shape (N,).
EpsLike = float | int | torch.Tensor

_NORMS = {"linf": "linf", "inf": "linf", "l_inf": "linf", "l2": "l2", "2": "l2"}


def parse_norm(norm: object, name: str = "norm") -> str:
    """Normalise a norm name: ``"linf"`` (also ``"inf"``, ``inf``) or ``"l2"`` (also ``2``)."""
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        key = "inf" if norm == float("inf") else str(int(norm)) if norm == int(norm) else ""
    else:
        key = str(norm).strip().lower()
    if key not in _NORMS:
        raise ValueError(f"{name} must be 'linf' or 'l2'; got {norm!r}")
    return _NORMS[key]


def _check_eps_like(eps: object, name: str) -> float | torch.Tensor:
    if isinstance(eps, torch.Tensor):
        if eps.ndim == 0:
            return check_eps(float(eps), name)
        if eps.ndim != 1:
            raise ValueError(
                f"{name} must be a number or a per-sample tensor of shape (N,); "
                f"got shape {tuple(eps.shape)}"
            )
        if eps.dtype == torch.bool or eps.is_complex():
            raise TypeError(f"{name} must be a real tensor; got dtype {eps.dtype}")
        values = eps.detach().to(torch.float64 if eps.dtype == torch.float64 else torch.float32)
        if values.numel():
            if not bool(torch.isfinite(values).all()):
                bad = values[~torch.isfinite(values)][0].item()
                raise ValueError(f"{name} must be finite; found {bad}")
            lo = float(values.min())
            if lo < 0:
                raise ValueError(f"{name} must be >= 0; observed min={lo:g}")
        return values
    return check_eps(eps, name)


def _eps_column(eps: float | torch.Tensor, n: int, name: str, like: torch.Tensor) -> torch.Tensor:
    """A budget as an (N,) tensor on ``like``'s device and dtype."""
    if isinstance(eps, torch.Tensor):
        if eps.shape[0] != n:
            raise ValueError(
                f"{name} has {eps.shape[0]} per-sample values but the batch has {n} images"
            )
        return eps.to(device=like.device, dtype=like.dtype)
    return torch.full((n,), eps, device=like.device, dtype=like.dtype)


def _index(index: torch.Tensor | Sequence[int] | slice) -> torch.Tensor | slice:
    if isinstance(index, slice):
        return index
    return torch.as_tensor(index, dtype=torch.long).reshape(-1)


def _take(value: float | torch.Tensor, index: torch.Tensor | slice) -> float | torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value[index.to(value.device) if isinstance(index, torch.Tensor) else index]
    return value


def _eps_repr(eps: float | torch.Tensor) -> str:
    if isinstance(eps, torch.Tensor):
        return f"tensor(N={eps.numel()})"
    return f"{eps:.6g}"


class Linf(Threat):
    """The Linf ball ``||delta||_inf <= eps`` intersected with ``0 <= x + delta <= 1``.

    Args:
        eps: radius, a number or a per-sample tensor (N,); >= 0.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> bound = Linf(8 / 255).bind(x)
        >>> delta = bound.project(torch.randn_like(x))
        >>> bool(bound.contains(delta).all()), round(float(delta.abs().max()) * 255, 4)
        (True, 8.0)
    """

    norm = "linf"

    def __init__(self, eps: EpsLike = 8 / 255) -> None:
        self.eps = _check_eps_like(eps, "eps")

    def bind_checked(self, x: torch.Tensor) -> BoundThreat:
        n = x.shape[0]
        return BoundLinfMap(x, _eps_column(self.eps, n, "eps", x).view(n, 1, 1, 1))

    def subset(self, index: torch.Tensor | Sequence[int] | slice) -> Linf:
        return Linf(_take(self.eps, _index(index)))

    def __repr__(self) -> str:
        return f"Linf(eps={_eps_repr(self.eps)})"


class L2(Threat):
    """The L2 ball ``||delta||_2 <= eps`` (over C*H*W) intersected with ``0 <= x + delta <= 1``.

    ``project`` is the exact Euclidean projection onto ball and box
    (:func:`~foveal.threats.geometry.project_l2_box`); ``rescale_`` is "rescale, then clip".

    Args:
        eps: radius, a number or a per-sample tensor (N,); >= 0.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> bound = L2(0.5).bind(x)
        >>> delta = bound.project(torch.randn_like(x))
        >>> bool((delta.flatten(1).norm(dim=1) <= 0.5 + 1e-6).all())
        True
    """

    norm = "l2"

    def __init__(self, eps: EpsLike = 0.5) -> None:
        self.eps = _check_eps_like(eps, "eps")

    def bind_checked(self, x: torch.Tensor) -> BoundThreat:
        n = x.shape[0]
        return BoundL2Regions(x, [None], _eps_column(self.eps, n, "eps", x)[:, None], ["image"])

    def subset(self, index: torch.Tensor | Sequence[int] | slice) -> L2:
        return L2(_take(self.eps, _index(index)))

    def __repr__(self) -> str:
        return f"L2(eps={_eps_repr(self.eps)})"


def ball(norm: str, eps: EpsLike) -> Threat:
    """``Linf(eps)`` or ``L2(eps)`` by name (``"linf"`` / ``"l2"``)."""
    return Linf(eps) if parse_norm(norm) == "linf" else L2(eps)


def box_threat(images: torch.Tensor, norm: str) -> Threat:
    """A set equal to the box ``0 <= x + delta <= 1`` alone, reporting norms in ``norm``.

    ``Linf(1)`` and ``L2(sqrt(C*H*W))`` contain every point of the box, so binding them adds no
    constraint beyond the box; minimal-perturbation attacks use them when no set is given.
    """
    if norm == "l2":
        return L2(math.sqrt(max(images[0].numel() if len(images) else 1, 1)))
    return Linf(1.0)


def _check_partition(masks: Mapping[str, torch.Tensor]) -> None:
    shapes = {name: tuple(m.shape) for name, m in masks.items()}
    first = next(iter(masks.values()))
    n, _, h, w = first.shape
    channels = {m.shape[1] for m in masks.values()} - {1}
    for m in masks.values():
        if m.shape[0] != n or m.shape[2:] != (h, w):
            raise ValueError(
                f"masks must all have shape (N,1|C,H,W) with the same N, H, W; got {shapes}"
            )
    if len(channels) > 1:
        raise ValueError(f"masks must have 1 or the same C channels; got {shapes}")
    c = channels.pop() if channels else 1
    total = torch.zeros((n, c, h, w), dtype=torch.float32, device=first.device)
    for m in masks.values():
        total += m.to(torch.float32)
    for problem, bad in (("in no region", total == 0), ("in two or more regions", total > 1)):
        count = int(bad.sum())
        if count:
            i, ch, y, x = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"masks must partition the image (every pixel in exactly one region); "
                f"{count} pixel positions are {problem} (first at sample {i}, channel {ch}, "
                f"row {y}, column {x}); regions: {list(masks)}"
            )


class RegionBudget(Threat):
    """One budget per region of a partition of the image, in one norm.

    ``norm="linf"``: ``|delta| <= eps_r`` on region ``r`` (an eps map). ``norm="l2"``: a
    separate ball ``||delta * mask_r||_2 <= eps_r`` per region. Both are intersected with the box
    ``0 <= x + delta <= 1``. A region with budget 0 is frozen: its pixels never change.

    Args:
        masks: ``{name: mask}``, each mask (N,1,H,W) or (N,C,H,W) in {0,1}; together they must
            cover every pixel exactly once (checked).
        eps: ``{name: budget}`` with the same names; each budget a number or a per-sample
            tensor (N,), >= 0.
        norm: ``"linf"`` or ``"l2"``.

    Example:
        >>> fg = torch.zeros(1, 1, 8, 8); fg[..., 2:6, 2:6] = 1
        >>> threat = RegionBudget({"fg": fg, "bg": 1 - fg}, {"fg": 4 / 255, "bg": 16 / 255})
        >>> bound = threat.bind(torch.full((1, 3, 8, 8), 0.5))
        >>> delta = bound.project(torch.ones(1, 3, 8, 8))
        >>> round(float(delta[0, 0, 3, 3]) * 255), round(float(delta[0, 0, 0, 0]) * 255)
        (4, 16)
    """

    def __init__(
        self,
        masks: Mapping[str, torch.Tensor],
        eps: Mapping[str, EpsLike],
        norm: str = "linf",
    ) -> None:
        if not isinstance(masks, Mapping) or not masks:
            raise TypeError(f"masks must be a non-empty mapping name -> mask; got {masks!r}")
        if not isinstance(eps, Mapping):
            raise TypeError(f"eps must be a mapping name -> budget; got {eps!r}")
        if set(eps) != set(masks):
            raise ValueError(
                f"eps must give one budget per region; regions {sorted(masks)}, "
                f"eps keys {sorted(eps)}"
            )
        self.norm = parse_norm(norm)
        checked: dict[str, torch.Tensor] = {}
        for name, m in masks.items():
            label = f"masks[{name!r}]"
            if not isinstance(m, torch.Tensor):
                raise TypeError(f"{label} must be a torch.Tensor; got {type(m).__name__}")
            if m.ndim != 4:
                raise ValueError(
                    f"{label} must have shape (N,1,H,W) or (N,C,H,W); got shape {tuple(m.shape)}"
                )
            bad = (m != 0) & (m != 1)
            if bool(bad.any()):
                raise ValueError(f"{label} must be binary (0/1); found value {float(m[bad][0]):g}")
            checked[str(name)] = m.detach()
        _check_partition(checked)
        self.masks = checked
        self.eps = {str(k): _check_eps_like(v, f"eps[{k!r}]") for k, v in eps.items()}
        n = next(iter(checked.values())).shape[0]
        for k, v in self.eps.items():
            if isinstance(v, torch.Tensor) and v.shape[0] != n:
                raise ValueError(
                    f"eps[{k!r}] has {v.shape[0]} per-sample values but masks have {n} samples"
                )

    def bind_checked(self, x: torch.Tensor) -> BoundThreat:
        n = x.shape[0]
        masks = [
            check_mask(m, x, f"masks[{name!r}]").to(device=x.device, dtype=x.dtype)
            for name, m in self.masks.items()
        ]
        eps = [_eps_column(self.eps[name], n, f"eps[{name!r}]", x) for name in self.masks]
        if self.norm == "linf":
            eps_map = sum(
                (e.view(n, 1, 1, 1) * m for e, m in zip(eps, masks, strict=True)),
                start=torch.zeros((n, 1, 1, 1), device=x.device, dtype=x.dtype),
            )
            return BoundLinfMap(x, eps_map, list(zip(self.masks, masks, strict=True)))
        return BoundL2Regions(x, masks, torch.stack(eps, 1), list(self.masks))

    def subset(self, index: torch.Tensor | Sequence[int] | slice) -> RegionBudget:
        idx = _index(index)
        return RegionBudget(
            {k: _take(m, idx) for k, m in self.masks.items()},  # type: ignore[misc]
            {k: _take(e, idx) for k, e in self.eps.items()},
            self.norm,
        )

    def __repr__(self) -> str:
        budgets = ", ".join(f"{k}={_eps_repr(v)}" for k, v in self.eps.items())
        return f"RegionBudget({budgets}, norm={self.norm!r})"


def dual(mask: torch.Tensor, eps_fg: EpsLike, eps_bg: EpsLike, norm: str = "linf") -> RegionBudget:
    """Tong et al.'s (2020) dual-perturbation set: ``eps_fg`` on the foreground, else ``eps_bg``.

    Args:
        mask: foreground mask (N,1,H,W) or (N,C,H,W) in {0,1}.
        eps_fg, eps_bg: budgets of the foreground and the background (number or (N,)).
        norm: ``"linf"`` (an eps map) or ``"l2"`` (one ball per region).

    Example:
        >>> fg = torch.zeros(2, 1, 8, 8); fg[..., :4, :] = 1
        >>> dual(fg, 4 / 255, 20 / 255)
        RegionBudget(foreground=0.0156863, background=0.0784314, norm='linf')
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor; got {type(mask).__name__}")
    return RegionBudget(
        {"foreground": mask, "background": 1 - mask},
        {"foreground": eps_fg, "background": eps_bg},
        norm,
    )


def frozen(mask: torch.Tensor, eps: EpsLike, norm: str = "linf") -> RegionBudget:
    """Budget ``eps`` everywhere except on ``mask``, whose pixels never change (SIP-AT, Eq. 9).

    ``frozen(1 - mask, eps)`` restricts the perturbation to ``mask``.

    Args:
        mask: pixels to freeze (N,1,H,W) or (N,C,H,W) in {0,1}.
        eps: budget of the other pixels (number or (N,)).
        norm: ``"linf"`` or ``"l2"`` (for L2 the free pixels share one ball).

    Example:
        >>> salient = torch.zeros(1, 1, 8, 8); salient[..., 3:5, 3:5] = 1
        >>> bound = frozen(salient, 8 / 255).bind(torch.rand(1, 3, 8, 8))
        >>> float(bound.project(torch.ones(1, 3, 8, 8))[0, :, 3, 3].abs().max())
        0.0
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor; got {type(mask).__name__}")
    return RegionBudget({"free": 1 - mask, "frozen": mask}, {"free": eps, "frozen": 0.0}, norm)


class EpsMap(Threat):
    """A per-pixel Linf budget ``|delta| <= eps_map`` (PART), intersected with the box.

    Args:
        eps_map: budgets (N,1,H,W) or (N,C,H,W), finite and >= 0; 0 freezes a pixel.

    Example:
        >>> eps_map = torch.full((1, 1, 8, 8), 7 / 255); eps_map[..., 2:4, 2:4] = 8 / 255
        >>> bound = EpsMap(eps_map).bind(torch.full((1, 3, 8, 8), 0.5))
        >>> round(float(bound.project(torch.ones(1, 3, 8, 8))[0, 0, 2, 2]) * 255)
        8
    """

    norm = "linf"

    def __init__(self, eps_map: torch.Tensor) -> None:
        if not isinstance(eps_map, torch.Tensor):
            raise TypeError(f"eps_map must be a torch.Tensor; got {type(eps_map).__name__}")
        if eps_map.ndim != 4:
            raise ValueError(
                f"eps_map must have shape (N,1,H,W) or (N,C,H,W); got shape {tuple(eps_map.shape)}"
            )
        if not eps_map.is_floating_point():
            raise TypeError(f"eps_map must be a floating-point tensor; got dtype {eps_map.dtype}")
        if eps_map.numel():
            if not bool(torch.isfinite(eps_map).all()):
                raise ValueError(f"eps_map must be finite; found {eps_map[~eps_map.isfinite()][0]}")
            lo = float(eps_map.min())
            if lo < 0:
                raise ValueError(f"eps_map must be >= 0; observed min={lo:g}")
        self.eps_map = eps_map.detach()

    def bind_checked(self, x: torch.Tensor) -> BoundThreat:
        eps_map = check_mask(self.eps_map, x, "eps_map", binary=False)
        return BoundLinfMap(x, eps_map.to(device=x.device, dtype=x.dtype))

    def subset(self, index: torch.Tensor | Sequence[int] | slice) -> EpsMap:
        idx = _index(index)
        return EpsMap(self.eps_map[idx])

    def __repr__(self) -> str:
        return f"EpsMap(shape={tuple(self.eps_map.shape)})"
