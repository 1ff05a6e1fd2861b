"""Adversarial-training recipes: an inner attack on a perturbation set plus an outer loss.

Each recipe plugs into the one training loop of :mod:`foveal.training` (seeding, schedules,
checkpoints, exact resume, Ctrl-C and ``torchrun`` all come from there):

========== ======================================================================================
name       inner maximisation / outer loss
========== ======================================================================================
madry      PGD on an Lp ball / cross-entropy on the adversarial images (Madry et al. 2018)
trades     PGD on KL(p(x) || p(x')) from x + 0.001 N(0, I) / CE(x) + beta * KL (Zhang et al.,
           ICML 2019)
fat        early-stopped PGD-K-tau (per-example counter, tau schedule) / CE (Zhang et al., ICML
           2020)
part       PGD on a per-pixel eps map from Grad-CAM of the exact training batch: eps on
           important pixels (normalised CAM > mean + std), eps_low elsewhere; ``burn_in``
           epochs of madry first (Zhang et al., ICML 2024, without the reference code's mask
           misalignment)
dual       AT-Dual (Tong et al. 2020, Eq. 4): PGD on the dual set {foreground: eps_F, background:
           eps_B} with the salience term off (lambda = 0, as in Tong et al.'s training runs); masks
           from the dataset or from a masker
sip-h      SIP-AT (Redgrave & Czajka 2024, Eq. 9): PGD with the salient pixels frozen;
           dataset (human) masks
sip-s      SIP-AT with the top-k gradient-mass masks (Eq. 7-8) of a robust reference model
========== ======================================================================================

``fast=True`` turns the inner attack of any recipe into one step from a random start with step
``1.25 * eps`` ("fast is better than free", Wong et al. 2020).

Each recipe registers its settings class in :data:`~foveal.training.RECIPES` (``MadrySettings``,
``TradesSettings``, ...: pydantic models with descriptions and bounds, unknown keys are errors);
:func:`make_recipe` validates keyword settings against it and builds the recipe.

The inner attack always runs on the bare model in eval mode (inputs' gradients need no
synchronisation between ``torchrun`` processes); the outer loss runs on the model the loop
hands over, so DistributedDataParallel averages its gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from foveal._validation import check_eps
from foveal.attacks import PGD
from foveal.attacks.base import eval_mode
from foveal.batching import Batch, map_batches, predict
from foveal.data.base import ArrayDataset
from foveal.threats import EpsMap, Threat, ball, dual, frozen, parse_norm
from foveal.training import RECIPES, Budget, NormName, Recipe, RecipeSettings

__all__ = [
    "RECIPES",
    "AdversarialRecipe",
    "AdversarialSettings",
    "DualRecipe",
    "DualSettings",
    "FatRecipe",
    "FatSettings",
    "MadryRecipe",
    "MadrySettings",
    "PartRecipe",
    "PartSettings",
    "SipHSettings",
    "SipRecipe",
    "SipSSettings",
    "TradesRecipe",
    "TradesSettings",
    "robust_accuracy",
    "top_k_masker",
]

#: FAT's tau schedule: the reference's 120-epoch schedule (tau 0 up to epoch 50, 1 up to 90,
#: then 2) as fractions of the run.
FAT_TAU_SCHEDULE: tuple[tuple[float, int], ...] = ((50 / 120, 0), (90 / 120, 1), (1.0, 2))

MaskFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def _bare(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        inner = model.module
        assert isinstance(inner, nn.Module)
        return inner
    return model


def robust_accuracy(
    model: nn.Module, data: ArrayDataset, *, eps: float, norm: str = "linf", steps: int = 10,
    n: int | None = 500, batch_size: int = 256, threat_fn: Callable[[dict], Threat] | None = None,
) -> float:  # fmt: skip
    """Accuracy under PGD-``steps`` (first ``n`` images of ``data``), a fixed-seed attack."""
    m = len(data) if n is None else min(n, len(data))
    attack = PGD(model, eps=eps, norm=norm, steps=steps, seed=0)
    if m == 0:
        return 0.0

    def robust(b: Batch) -> torch.Tensor:
        threat = threat_fn(b) if threat_fn is not None else None
        x_adv = attack(b["image"], b["label"], threat=threat)
        return predict(model, x_adv, batch_size=batch_size) == b["label"]

    device = next(model.parameters()).device
    return int(map_batches(robust, data, batch_size=batch_size, device=device, stop=m).sum()) / m


class AdversarialRecipe(Recipe):
    """Base recipe: PGD on ``threat(batch)`` inside, cross-entropy on the result outside.

    Args:
        eps: budget (Linf or L2 by ``norm``).
        norm: ``"linf"`` or ``"l2"``.
        steps: inner PGD steps (default 10).
        alpha: inner step (default ``2.5 * eps / steps``, Madry's rule).
        fast: one step from a random start with step ``1.25 * eps`` instead.
        eval_n: held-out images for the per-epoch PGD robust accuracy (0 turns it off).
        eval_steps: PGD steps of that evaluation.
    """

    name = "madry"

    def __init__(
        self, *, eps: float = 8 / 255, norm: str = "linf", steps: int = 10,
        alpha: float | None = None, fast: bool = False, eval_n: int = 500, eval_steps: int = 10,
    ) -> None:  # fmt: skip
        self.eps = check_eps(eps, "eps")
        self.norm = parse_norm(norm)
        if steps < 1:
            raise ValueError(f"steps must be >= 1; got {steps}")
        self.steps, self.alpha, self.fast = int(steps), alpha, bool(fast)
        self.eval_n, self.eval_steps = int(eval_n), int(eval_steps)

    # -- the perturbation set of this batch (overridden by the saliency-aware recipes)
    def threat(self, model: nn.Module, batch: dict[str, torch.Tensor], epoch: int) -> Threat:
        return ball(self.norm, self.eps)

    def attack(self, model: nn.Module) -> PGD:
        if self.fast:
            return PGD(model, eps=self.eps, norm=self.norm, steps=1, alpha=1.25 * self.eps,
                       seed=None)  # fmt: skip
        return PGD(model, eps=self.eps, norm=self.norm, steps=self.steps, alpha=self.alpha,
                   seed=None)  # fmt: skip

    def inner(self, model: nn.Module, batch: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        """Adversarial images for the batch (detached)."""
        bare = _bare(model)
        threat = self.threat(bare, batch, epoch)
        return self.attack(bare)(batch["image"], batch["label"], threat=threat).detach()

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x_adv = self.inner(model, batch, epoch)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        return loss, {"loss": float(loss.detach()), "train_adv_acc": float(acc)}

    def evaluate(
        self, model: nn.Module, data: ArrayDataset, *, batch_size: int
    ) -> dict[str, float]:
        if self.eval_n <= 0:
            return {}
        acc = robust_accuracy(model, data, eps=self.eps, norm=self.norm, steps=self.eval_steps,
                              n=self.eval_n, batch_size=batch_size)  # fmt: skip
        return {f"pgd{self.eval_steps}_{self.norm}_acc": acc}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "eps": self.eps, "norm": self.norm, "steps": self.steps,
                "alpha": self.alpha, "fast": self.fast}  # fmt: skip


class MadryRecipe(AdversarialRecipe):
    """PGD-AT on an Lp ball."""


class TradesRecipe(AdversarialRecipe):
    """TRADES (Zhang et al. 2019): inner max of KL(p(x)||p(x')), outer CE + beta * KL."""

    name = "trades"

    def __init__(self, *, beta: float = 6.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = check_eps(beta, "beta")

    def inner(self, model: nn.Module, batch: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        bare = _bare(model)
        x = batch["image"]
        bound = self.threat(bare, batch, epoch).bind(x)
        steps = 1 if self.fast else self.steps
        alpha = 1.25 * self.eps if self.fast else (self.alpha or 2.5 * self.eps / steps)
        with eval_mode(bare):
            with torch.no_grad():
                p_clean = F.softmax(bare(x), dim=1)
            if self.fast:
                delta = bound.sample()
            else:
                delta = bound.project(0.001 * torch.randn_like(x))
            for _ in range(steps):
                delta.requires_grad_(True)
                kl = F.kl_div(F.log_softmax(bare(x + delta), 1), p_clean, reduction="sum")
                (grad,) = torch.autograd.grad(kl, delta)
                delta = bound.project(delta.detach() + alpha * bound.ascent(grad))
        return (x + delta).clamp(0, 1).detach()

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x_adv = self.inner(model, batch, epoch)
        x, y = batch["image"], batch["label"]
        logits = model(torch.cat([x, x_adv]))
        clean, adv = logits[: len(x)], logits[len(x) :]
        natural = F.cross_entropy(clean, y)
        robust = F.kl_div(F.log_softmax(adv, 1), F.softmax(clean, 1), reduction="sum") / len(x)
        loss = natural + self.beta * robust
        acc = (adv.argmax(1) == y).float().mean()
        return loss, {"loss": float(loss.detach()), "kl": float(robust.detach()),
                      "train_adv_acc": float(acc)}  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "beta": self.beta}


class FatRecipe(AdversarialRecipe):
    """FAT (Zhang et al. 2020): PGD-K-tau, stopping each example tau steps after it fools.

    ``tau_schedule`` maps epoch fractions to tau: the reference's 120-epoch schedule
    (tau 0 up to epoch 50, 1 up to 90, then 2) scaled to the run, i.e.
    ``((50/120, 0), (90/120, 1), (1.0, 2))``; ``epochs`` must be given for the scaling.
    """

    name = "fat"

    def __init__(
        self, *, epochs: int, tau_schedule: tuple[tuple[float, int], ...] = FAT_TAU_SCHEDULE,
        omega: float = 0.001, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.epochs, self.schedule, self.omega = int(epochs), tuple(tau_schedule), float(omega)

    def tau(self, epoch: int) -> int:
        frac = (epoch + 1) / max(self.epochs, 1)
        for upto, tau in self.schedule:
            if frac <= upto + 1e-9:
                return int(tau)
        return int(self.schedule[-1][1])

    def inner(self, model: nn.Module, batch: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        bare = _bare(model)
        x, y = batch["image"], batch["label"]
        bound = self.threat(bare, batch, epoch).bind(x)
        steps = 1 if self.fast else self.steps
        alpha = 1.25 * self.eps if self.fast else (self.alpha or 2.5 * self.eps / steps)
        counter = torch.full((len(x),), self.tau(epoch), device=x.device)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        with eval_mode(bare):
            delta = bound.sample()
            for _ in range(steps):
                delta.requires_grad_(True)
                logits = bare(x + delta)
                wrong = logits.argmax(1) != y
                # Wrong and out of patience: freeze; wrong with patience left: spend one.
                active &= ~(wrong & (counter <= 0))
                counter = torch.where(wrong & active, counter - 1, counter)
                loss = F.cross_entropy(logits, y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, delta)
                noise = self.omega * torch.randn_like(x)
                step = delta.detach() + alpha * bound.ascent(grad) + noise
                new = bound.project(step)
                delta = torch.where(active.view(-1, 1, 1, 1), new, delta.detach())
                if not bool(active.any()):
                    break
        return (x + delta).clamp(0, 1).detach()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tau_schedule": self.schedule, "omega": self.omega}


def _batch_masks(batch: dict[str, torch.Tensor], recipe: str) -> torch.Tensor:
    if "mask" not in batch:
        raise ValueError(
            f"recipe {recipe!r} with dataset masks needs data with foreground masks (e.g. "
            f"shapes, digits, cub200); this batch has none — pass a masker instead"
        )
    return batch["mask"]


class DualRecipe(AdversarialRecipe):
    """AT-Dual (Tong et al. 2020, Eq. 4). ``masker(model, batch) -> (N,1,H,W)`` foreground masks;
    default: the dataset's masks. ``eps`` is eps_F; ``eps_bg`` defaults to ``5 * eps``."""

    name = "dual"

    def __init__(self, *, eps_bg: float | None = None, masker: MaskFn | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.eps_bg = check_eps(5 * self.eps if eps_bg is None else eps_bg, "eps_bg")
        self.masker = masker

    def threat(self, model: nn.Module, batch: dict[str, torch.Tensor], epoch: int) -> Threat:
        mask = self.masker(model, batch) if self.masker else _batch_masks(batch, self.name)
        return dual(mask, self.eps, self.eps_bg, norm=self.norm)

    def attack(self, model: nn.Module) -> PGD:
        eps = max(self.eps, self.eps_bg)
        if self.fast:
            return PGD(model, eps=eps, norm=self.norm, steps=1, rel_alpha=1.25, seed=None)
        rel = None if self.alpha is None else self.alpha / self.eps
        return PGD(model, eps=eps, norm=self.norm, steps=self.steps, rel_alpha=rel, seed=None)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "eps_bg": self.eps_bg,
                "masks": "masker" if self.masker else "dataset"}  # fmt: skip


class SipRecipe(AdversarialRecipe):
    """SIP-AT (Redgrave & Czajka 2024, Eq. 9): delta' = delta o (1 - M(x)).

    ``masker(model, batch)`` gives the salient masks M; default: the dataset's (human) masks
    (``sip-h``). :func:`top_k_masker` builds the ``sip-s`` masker from a robust model.
    """

    name = "sip"

    def __init__(self, *, masker: MaskFn | None = None, variant: str = "sip-h",
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.masker, self.variant = masker, variant

    def threat(self, model: nn.Module, batch: dict[str, torch.Tensor], epoch: int) -> Threat:
        mask = self.masker(model, batch) if self.masker else _batch_masks(batch, self.variant)
        return frozen(mask, self.eps, norm=self.norm)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "name": self.variant}


def top_k_masker(reference: nn.Module, *, fraction: float = 0.5) -> MaskFn:
    """SIP-S masks (Redgrave & Czajka 2024, Eq. 7-8): the smallest set of pixels holding
    ``fraction`` of the input-gradient mass of the robust ``reference`` model, for the true
    label."""
    from foveal.saliency import Gradient, top_k_mass

    method = Gradient(reference)

    def masker(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = method(batch["image"], target=batch["label"])
        return top_k_mass(maps, fraction)

    return masker


class PartRecipe(AdversarialRecipe):
    """PART (Zhang et al., ICML 2024): important pixels (normalised Grad-CAM > mean + std) get
    ``eps``, the rest ``eps_low``; the CAM is computed on the exact training batch, every step."""

    name = "part"

    def __init__(self, *, eps_low: float = 7 / 255, burn_in: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.norm != "linf":
            raise ValueError(f"part uses a per-pixel Linf eps map; got norm={self.norm!r}")
        self.eps_low = check_eps(eps_low, "eps_low")
        self.burn_in = int(burn_in)

    def threat(self, model: nn.Module, batch: dict[str, torch.Tensor], epoch: int) -> Threat:
        if epoch < self.burn_in:
            return ball("linf", self.eps)
        from foveal.saliency import create_method

        with eval_mode(model):
            cam = create_method("gradcam", model)(batch["image"]).detach()
        flat = cam.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        norm = (flat - lo) / (hi - lo).clamp_min(1e-12)
        important = norm > norm.mean(1, keepdim=True) + norm.std(1, keepdim=True)
        eps_map = torch.where(important, self.eps, self.eps_low).reshape(cam.shape)
        c = batch["image"].shape[1]
        return EpsMap(eps_map.expand(-1, c, -1, -1).contiguous())

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "eps_low": self.eps_low, "burn_in": self.burn_in}


# ---------------------------------------------------------------------- registered settings
class AdversarialSettings(RecipeSettings):
    """The settings every adversarial recipe takes (see :class:`AdversarialRecipe`)."""

    eps: Budget = Field(8 / 255, description="budget, Linf or L2 by norm (eps_F for dual)")
    norm: NormName = Field("linf", description="linf or l2")
    steps: int = Field(10, ge=1, description="inner PGD steps")
    alpha: Annotated[Budget, Field(gt=0)] | None = Field(
        None, description="inner step size (default 2.5 eps / steps)"
    )
    fast: bool = Field(False, description="one inner step of 1.25 eps from a random start")
    eval_n: int = Field(500, ge=0, description="held-out images for the per-epoch PGD accuracy")
    eval_steps: int = Field(10, ge=1, description="PGD steps of that per-epoch evaluation")

    def recipe_kwargs(self) -> dict[str, Any]:
        """The settings as keywords of the recipe's constructor."""
        return self.model_dump(exclude={"method"})


@RECIPES.register("madry", help="PGD adversarial training (Madry et al. 2018)")
class MadrySettings(AdversarialSettings):
    """Settings of :class:`MadryRecipe`."""

    method: Literal["madry"] = "madry"

    def build(self, *, epochs: int | None = None) -> Recipe:
        return MadryRecipe(**self.recipe_kwargs())


@RECIPES.register("trades", help="TRADES: CE + beta * KL, KL inner maximisation")
class TradesSettings(AdversarialSettings):
    """Settings of :class:`TradesRecipe`."""

    method: Literal["trades"] = "trades"
    beta: float = Field(6.0, ge=0, description="weight of the KL term")

    def build(self, *, epochs: int | None = None) -> Recipe:
        return TradesRecipe(**self.recipe_kwargs())


@RECIPES.register("fat", help="Friendly adversarial training (early-stopped PGD, tau schedule)")
class FatSettings(AdversarialSettings):
    """Settings of :class:`FatRecipe`; its tau schedule is scaled to the run's epochs."""

    method: Literal["fat"] = "fat"
    tau_schedule: tuple[tuple[float, int], ...] = Field(
        FAT_TAU_SCHEDULE, min_length=1, description="(fraction of the run, tau) pairs"
    )
    omega: float = Field(0.001, ge=0, description="std of the noise added to each inner step")

    def build(self, *, epochs: int | None = None) -> Recipe:
        if epochs is None:
            raise ValueError("recipe 'fat' needs epochs= (the run's length, for its tau schedule)")
        return FatRecipe(epochs=epochs, **self.recipe_kwargs())


@RECIPES.register("part", help="PART: per-pixel eps map from Grad-CAM, burn-in of madry")
class PartSettings(AdversarialSettings):
    """Settings of :class:`PartRecipe` (Linf only)."""

    method: Literal["part"] = "part"
    eps_low: Budget = Field(7 / 255, description="budget of the unimportant pixels")
    burn_in: int = Field(1, ge=0, description="epochs of madry first")

    @field_validator("norm")
    @classmethod
    def _linf(cls, norm: str) -> str:
        if norm != "linf":
            raise ValueError(f"part uses a per-pixel Linf eps map; got norm={norm!r}")
        return norm

    def build(self, *, epochs: int | None = None) -> Recipe:
        return PartRecipe(**self.recipe_kwargs())


@RECIPES.register("dual", help="AT-Dual: PGD on {foreground: eps_F, background: eps_B}")
class DualSettings(AdversarialSettings):
    """Settings of :class:`DualRecipe`; ``build(masker=...)`` replaces the dataset's masks."""

    method: Literal["dual"] = "dual"
    eps_bg: Budget | None = Field(None, description="background budget eps_B (default 5 eps)")

    def build(self, *, epochs: int | None = None, masker: MaskFn | None = None) -> Recipe:
        return DualRecipe(masker=masker, **self.recipe_kwargs())


@RECIPES.register("sip-h", help="SIP-AT: PGD with the dataset's (human) salient pixels frozen")
class SipHSettings(AdversarialSettings):
    """Settings of :class:`SipRecipe` with human masks; ``build(masker=...)`` replaces them."""

    method: Literal["sip-h"] = "sip-h"

    def build(self, *, epochs: int | None = None, masker: MaskFn | None = None) -> Recipe:
        return SipRecipe(variant="sip-h", masker=masker, **self.recipe_kwargs())


@RECIPES.register("sip-s", help="SIP-AT: PGD with the salient pixels of a robust model frozen")
class SipSSettings(AdversarialSettings):
    """Settings of :class:`SipRecipe` with :func:`top_k_masker` masks of a robust reference.

    The reference is the checkpoint ``reference`` (loaded by :meth:`build`) or a model given
    as ``build(reference=model)``.
    """

    method: Literal["sip-s"] = "sip-s"
    reference: str | None = Field(None, description="robust reference checkpoint directory")
    fraction: float = Field(0.5, gt=0, le=1, description="gradient mass the frozen pixels hold")

    def build(self, *, epochs: int | None = None, reference: nn.Module | None = None) -> Recipe:
        if reference is None:
            if self.reference is None:
                raise ValueError("sip-s needs reference= a robust model (--reference CKPT)")
            import foveal.models

            reference = foveal.models.load(self.reference)
        kwargs = self.model_dump(exclude={"method", "reference", "fraction"})
        masker = top_k_masker(reference, fraction=self.fraction)
        return SipRecipe(variant="sip-s", masker=masker, **kwargs)
