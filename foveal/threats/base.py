"""The perturbation-set interface: an unbound :class:`Threat` and its :class:`BoundThreat`.

A perturbation set depends on the batch twice over: its masks and per-sample budgets belong to
particular images, and every set is intersected with the box ``x + delta in [0, 1]``, which
depends on the pixel values. foveal therefore separates the two steps:

- a :class:`Threat` is the *description* (``Linf(8/255)``, ``dual(mask, 4/255, 20/255)``): cheap to
  build, holding only budgets and masks, and checked for consistency when it is built;
- ``threat.bind(x)`` checks the description against a batch ``x`` (N,C,H,W) (mask shapes, the
  length of per-sample budgets, the partition) and returns a :class:`BoundThreat` that owns the
  geometry for that batch: ``sample`` (a random start inside), ``project`` (the exact Euclidean
  projection onto the set), ``ascent`` (the steepest-ascent direction of a gradient),
  ``contains`` (membership, the check every test uses) and ``norms`` (per-region sizes).

Binding once per batch lets the attack engine pay for validation and for the constant parts of
the projection (the clamp bounds, region masks) once, not at every step.

The geometry is written by hand rather than taken from a library because the reference libraries
do not offer what is needed here: per-region budgets, eps maps and frozen pixels intersected
exactly with the [0, 1] box, with the region mask applied to the gradient before it is normalised.

Randomness: :meth:`BoundThreat.sample` takes either one ``torch.Generator`` (one draw for the
whole batch) or a sequence of N generators, one per sample, so that sample ``i``'s random start
does not depend on which other images share its batch (what the attack engine uses).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

from foveal._validation import check_images

__all__ = ["BoundThreat", "GeneratorLike", "Threat", "draw"]

#: One generator for the whole batch, one generator per sample, or ``None`` (torch's default).
GeneratorLike = torch.Generator | Sequence[torch.Generator] | None


def draw(
    kind: str,
    shape: Sequence[int],
    generator: GeneratorLike,
    *,
    device: torch.device,
    dtype: torch.dtype,
    precision: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Draw ``uniform`` [0,1) or standard ``normal`` noise of ``shape`` (N, ...).

    With a sequence of generators, row ``i`` is drawn from ``generator[i]`` alone, on that
    generator's device, so it does not depend on the other rows. Values are drawn in
    ``precision`` (float64 by default, so the draw does not depend on ``dtype``; float32 normals
    cost a fifth as much) and returned on ``device`` in ``dtype``.
    """
    if kind not in ("uniform", "normal"):
        raise ValueError(f"kind must be 'uniform' or 'normal'; got {kind!r}")
    fn = torch.rand if kind == "uniform" else torch.randn
    shape = tuple(int(s) for s in shape)
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = device if generator is None else generator.device
        out = fn(shape, generator=generator, device=gen_device, dtype=precision)
        return out.to(device=device, dtype=dtype)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise ValueError(
            f"generator must be one torch.Generator or one per sample ({shape[0]}); "
            f"got {len(gens)} generators"
        )
    if not gens:
        return torch.empty(shape, device=device, dtype=dtype)
    if all(g.device.type == "cpu" for g in gens):  # rows written in place: no stacking copy
        out = torch.empty(shape, dtype=precision)
        for row, g in zip(out, gens, strict=True):
            fn(shape[1:], generator=g, dtype=precision, out=row)
        return out.to(device=device, dtype=dtype)
    rows = [fn(shape[1:], generator=g, device=g.device, dtype=precision) for g in gens]
    return torch.stack([r.to(device) for r in rows]).to(dtype)


class BoundThreat(abc.ABC):
    """A perturbation set bound to one batch ``x`` (N,C,H,W): the geometry the attacks use.

    Every member ``delta`` satisfies the set's budget and the box ``0 <= x + delta <= 1``.

    Attributes:
        x: the batch the set is bound to (not copied; never modified).
        norm: ``"linf"`` or ``"l2"``.
        regions: names of the regions reported by :meth:`norms`.
        budget: a tensor broadcastable to ``x`` holding, per element, the radius of the ball
            that element belongs to (an eps map for Linf sets, eps of the element's region for
            L2 sets). ``budget * ascent(g)`` is the linear maximiser of ``<g, delta>`` over the
            (unboxed) set, so attacks take relative steps ``rel_alpha * budget * ascent(g)``.
    """

    x: torch.Tensor
    norm: str
    regions: tuple[str, ...]
    budget: torch.Tensor

    @abc.abstractmethod
    def sample(self, generator: GeneratorLike = None) -> torch.Tensor:
        """A random member of the set (N,C,H,W) (uniform in each ball, then projected)."""

    @abc.abstractmethod
    def project_(self, delta: torch.Tensor) -> torch.Tensor:
        """Project ``delta`` onto the set in place (where possible) and return it."""

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """The Euclidean projection of ``delta`` onto the set; ``delta`` is not modified."""
        self._check_delta(delta)
        return self.project_(delta.detach().clone())

    def rescale_(self, delta: torch.Tensor) -> torch.Tensor:
        """A member of the set near ``delta``, by "rescale, then clip" (may modify ``delta``).

        Each L2 region's part is scaled into its ball, then the whole is clipped to the box: the
        update most L2 PGD implementations use (torchattacks, robustness, AutoAttack's APGD). It
        lands inside the set and costs a few passes over the batch, but it is not the Euclidean
        projection (it can stop short of the budget when pixels saturate). Sets whose projection
        is a clamp (Linf, eps maps) return :meth:`project_`.
        """
        return self.project_(delta)

    def ascend_(self, delta: torch.Tensor, grad: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """``delta + step * ascent(grad)``, computed in place in ``delta`` and returned."""
        return delta.addcmul_(step, self.ascent(grad))

    @abc.abstractmethod
    def ascent(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of ``grad`` for this set's norm, unit size per region.

        The set's support (budget > 0, or the region's mask) is applied to ``grad`` before it
        is normalised.
        """

    @abc.abstractmethod
    def mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """``grad`` with the entries that cannot move (zero budget) set to zero."""

    @abc.abstractmethod
    def norms(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The size of ``delta`` in each region, in the set's norm: ``{region: (N,)}``."""

    @abc.abstractmethod
    def _within_budget(self, delta: torch.Tensor, atol: float) -> torch.Tensor:
        """Per-sample (N,) bool: the budget part of :meth:`contains`."""

    def contains(self, delta: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
        """Per-sample membership (N,) bool: finite, within budget (+atol) and in the box (+-atol).

        Args:
            delta: perturbation (N,C,H,W).
            atol: absolute tolerance for the budget and the box.
        """
        self._check_delta(delta)
        n = delta.shape[0]
        flat = delta.detach().reshape(n, -1)
        finite = torch.isfinite(flat).all(dim=1)
        adv = (self.x + delta.detach()).reshape(n, -1)
        in_box = ((adv >= -atol) & (adv <= 1 + atol)).all(dim=1)
        return finite & in_box & self._within_budget(delta.detach(), atol)

    def _check_delta(self, delta: object) -> None:
        if not isinstance(delta, torch.Tensor):
            raise TypeError(f"delta must be a torch.Tensor; got {type(delta).__name__}")
        if delta.shape != self.x.shape:
            raise ValueError(
                f"delta must have the shape of the bound images {tuple(self.x.shape)}; "
                f"got shape {tuple(delta.shape)}"
            )


class Threat(abc.ABC):
    """Description of a perturbation set; :meth:`bind` it to a batch to get its geometry.

    Subclasses: :class:`~foveal.threats.Linf`, :class:`~foveal.threats.L2`,
    :class:`~foveal.threats.RegionBudget` (with :func:`~foveal.threats.dual` and
    :func:`~foveal.threats.frozen`) and :class:`~foveal.threats.EpsMap`.
    """

    #: ``"linf"`` or ``"l2"``.
    norm: str

    def bind(self, x: torch.Tensor) -> BoundThreat:
        """Check this set against images ``x`` (N,C,H,W) in [0,1] and return its geometry."""
        return self.bind_checked(check_images(x, "images"))

    @abc.abstractmethod
    def bind_checked(self, x: torch.Tensor) -> BoundThreat:
        """:meth:`bind` for images already checked with ``check_images`` (the attack engine
        validates its inputs once and binds with this)."""

    @abc.abstractmethod
    def subset(self, index: torch.Tensor | Sequence[int] | slice) -> Threat:
        """The same set for the samples ``index`` of the batch (per-sample tensors sliced)."""
