"""Perturbation sets ("threats"): where a perturbation may go, and how large it may be there.

The shape of a perturbation is a first-class object shared by every attack: an attack only says
which objective to climb; the set says how to start (``sample``), how to step (``ascent``), how
to stay inside (``project``) and how to check (``contains``). A :class:`Threat` describes a set;
``threat.bind(x)`` validates it against a batch and returns the :class:`BoundThreat` that holds
the geometry for that batch (see :mod:`foveal.threats.base` for why binding is explicit).

Sets: :class:`Linf`, :class:`L2`, :class:`RegionBudget` (with :func:`dual` for the
foreground/background set of Tong et al. 2020 and :func:`frozen` for SIP-AT's frozen salient
pixels) and :class:`EpsMap` (PART's per-pixel budget) and :class:`Superpixel` (Dong et al.'s
(2020) superpixel subspace: delta constant per superpixel, zero outside a crop, in an L2 or Linf
ball). Every set
is intersected with the box ``0 <= x + delta <= 1`` and projected onto exactly.

:data:`BUILDERS` makes the set of a batch from the batch and a few options
(:class:`ThreatOptions`), by name: ``ball``, ``dual``, ``box``, ``frozen`` (``foveal attack
--threat``).

Adding a set (e.g. a superpixel subspace, delta constant per superpixel): subclass
:class:`Threat` (validation, ``bind``, ``subset``) and :class:`BoundThreat` (``sample``,
``project_``, ``ascent``, ``mask_gradient``, ``norms``, ``_within_budget``, and the ``budget``
attribute used for relative step sizes); every attack then works with it unchanged.

Example:
    >>> import torch
    >>> from foveal import threats
    >>> x = torch.rand(4, 3, 8, 8)
    >>> fg = (torch.rand(4, 1, 8, 8) > 0.5).float()
    >>> bound = threats.dual(fg, 4 / 255, 20 / 255).bind(x)
    >>> delta = bound.sample(torch.Generator().manual_seed(0))
    >>> bool(bound.contains(delta).all())
    True
"""

from __future__ import annotations

from foveal.threats.base import BoundThreat, GeneratorLike, Threat, draw
from foveal.threats.builders import BUILDERS, ThreatBuilder, ThreatOptions
from foveal.threats.geometry import BoundL2Regions, BoundLinfMap, project_l2_box
from foveal.threats.sets import (
    L2,
    EpsLike,
    EpsMap,
    Linf,
    RegionBudget,
    ball,
    box_threat,
    dual,
    frozen,
    parse_norm,
)
from foveal.threats.superpixel import BoundSuperpixel, Superpixel

__all__ = [
    "BUILDERS",
    "L2",
    "BoundL2Regions",
    "BoundLinfMap",
    "BoundSuperpixel",
    "BoundThreat",
    "EpsLike",
    "EpsMap",
    "GeneratorLike",
    "Linf",
    "RegionBudget",
    "Superpixel",
    "Threat",
    "ThreatBuilder",
    "ThreatOptions",
    "ball",
    "box_threat",
    "draw",
    "dual",
    "frozen",
    "parse_norm",
    "project_l2_box",
]
