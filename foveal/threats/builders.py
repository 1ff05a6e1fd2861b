"""Threat builders: how the perturbation set of a batch is made from the batch and a few options.

An attack run over a dataset needs one set per batch, often built from the batch itself (its
foreground masks, its image size). :data:`BUILDERS` maps a name (``foveal attack --threat``,
``foveal list threats``) to ``builder(batch, options) -> Threat``, where ``batch`` is a dict with
``image`` and, when the data have them, ``mask``, and ``options`` a :class:`ThreatOptions`.

Example:
    >>> import torch
    >>> batch = {"image": torch.rand(2, 3, 8, 8), "mask": torch.ones(2, 1, 8, 8)}
    >>> options = ThreatOptions(norm="linf", eps=8 / 255, eps_fg=4 / 255, eps_bg=20 / 255)
    >>> type(BUILDERS.get("dual")(batch, options)).__name__
    'RegionBudget'
    >>> BUILDERS.get("frozen")({"image": batch["image"]}, options)
    Traceback (most recent call last):
    ...
    ValueError: threat 'frozen' needs a batch with foreground masks (data such as shapes); this batch has none
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from foveal._validation import check_eps
from foveal.registry import Registry
from foveal.threats.base import Threat
from foveal.threats.sets import ball, box_threat, dual, frozen, parse_norm

__all__ = ["BUILDERS", "ThreatBuilder", "ThreatOptions"]


@dataclass(frozen=True)
class ThreatOptions:
    """The options a threat builder may use (validated on construction).

    Attributes:
        norm: ``"linf"`` or ``"l2"``.
        eps: the budget of the ball (and of the free pixels of ``frozen``).
        eps_fg, eps_bg: the foreground and background budgets of ``dual``.
    """

    norm: str
    eps: float
    eps_fg: float | None = None
    eps_bg: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))
        object.__setattr__(self, "eps", check_eps(self.eps, "eps"))
        for key in ("eps_fg", "eps_bg"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, check_eps(value, key))


#: ``builder(batch, options) -> Threat``.
ThreatBuilder = Callable[[Mapping[str, torch.Tensor], ThreatOptions], Threat]

#: Name -> threat builder (drives ``foveal attack --threat`` and ``foveal list threats``).
BUILDERS: Registry[ThreatBuilder] = Registry("threat")


def _masks(batch: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    mask = batch.get("mask")
    if mask is None:
        raise ValueError(
            f"threat {name!r} needs a batch with foreground masks (data such as shapes); this "
            f"batch has none"
        )
    return mask


@BUILDERS.register("ball", help="the norm ball of radius eps")
def _ball(batch: Mapping[str, torch.Tensor], o: ThreatOptions) -> Threat:
    return ball(o.norm, o.eps)


@BUILDERS.register("dual", help="eps_fg on the foreground mask, eps_bg elsewhere")
def _dual(batch: Mapping[str, torch.Tensor], o: ThreatOptions) -> Threat:
    if o.eps_fg is None or o.eps_bg is None:
        raise ValueError(
            f"threat 'dual' needs eps_fg and eps_bg; got eps_fg={o.eps_fg}, eps_bg={o.eps_bg}"
        )
    return dual(_masks(batch, "dual"), o.eps_fg, o.eps_bg, o.norm)


@BUILDERS.register(
    "box", help="the box [0,1] only (minimal-perturbation attacks: cw, deepfool, jsma)"
)
def _box(batch: Mapping[str, torch.Tensor], o: ThreatOptions) -> Threat:
    return box_threat(batch["image"], o.norm)


@BUILDERS.register("frozen", help="eps everywhere except the foreground, which is frozen")
def _frozen(batch: Mapping[str, torch.Tensor], o: ThreatOptions) -> Threat:
    return frozen(_masks(batch, "frozen"), o.eps, o.norm)
