"""Computing one cell: run its attack on the evaluation images and measure the result.

Every attack cell records, over the ``n`` evaluation images:

- ``accuracy`` (robust accuracy: adversarial prediction == label), ``clean_accuracy``;
- ``success_rate``: the fraction of the correctly classified clean images that the attack
  turns into errors (``None`` when the model gets none right);
- ``norms``: mean and max size of the perturbation per region, in the set's norm;
- ``foreground_score`` / ``foreground_score_clean``: mean fixation-density mass inside the
  foreground (seed 000) of the adversarial and the clean images; the foreground is the
  attack's own (dual), else the dataset's masks, else the half-range fixation masks;
- ``correct``: per image, ``"1"`` if still classified correctly, else ``"0"`` (the headline's
  per-image worst case needs it);
- ``detection``: per detector, the fraction of adversarial images flagged (all, and those that
  fool the model).

``sai`` cells add ``transforms`` (accuracy, clean accuracy and success rate of the model behind
each input transform on the same adversarial images: gray-box, seed 001); ``transfer`` cells
add ``targets`` (accuracy of every target model on the source's adversarial images); the
``probe`` cell measures what the sanity checks need (gradients, outputs, determinism).

Every attack is seeded with the run's seed (and draws per-image generators from it), and torch's
global generator is re-seeded before each cell, so a cell's result does not depend on which
cells ran before it: an interrupted and resumed run gives the same results as one that was not
interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foveal._modes import eval_mode
from foveal.app.evaluation.models import LoadedDetector
from foveal.app.evaluation.suite import Cell

__all__ = ["CellContext", "compute_cell"]

#: Images the probe looks at.
PROBE_IMAGES = 64


@dataclass
class CellContext:
    """What computing a cell needs: models, the evaluation batch, detectors and the output."""

    models: dict[str, nn.Module]
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    seed: int
    batch_size: int
    examples: int
    out: Path
    detectors: list[LoadedDetector] = field(default_factory=list)
    _cache: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ shared pieces
    def slices(self) -> list[slice]:
        n = self.images.shape[0]
        return [slice(lo, min(lo + self.batch_size, n)) for lo in range(0, n, self.batch_size)]

    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        preds = []
        with eval_mode(model), torch.no_grad():
            for sl in self.slices():
                preds.append(model(images[sl]).argmax(1))
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)

    def clean_predictions(self, name: str) -> torch.Tensor:
        key = ("clean", name)
        if key not in self._cache:
            self._cache[key] = self.predict(self.models[name], self.images)
        return self._cache[key]

    def fixation_masks(self) -> torch.Tensor:
        """Half-range masks of the spectral-residual fixation maps of the clean images."""
        key = ("fixation", "")
        if key not in self._cache:
            from foveal.saliency import half_range, spectral_residual

            with torch.no_grad():
                self._cache[key] = half_range(spectral_residual(self.images))
        return self._cache[key]

    def salient(self, source: str) -> torch.Tensor:
        """Foreground masks (N,1,H,W): the dataset's (``ground-truth``) or the fixation ones."""
        if source == "ground-truth":
            if self.masks is None:
                raise ValueError("ground-truth masks requested but the data have none")
            return self.masks
        return self.fixation_masks()

    def default_foreground(self) -> torch.Tensor:
        return self.masks if self.masks is not None else self.fixation_masks()


def _bool_string(values: torch.Tensor) -> str:
    return "".join("1" if bool(v) else "0" for v in values.flatten().tolist())


def _mean(values: torch.Tensor) -> float | None:
    return float(values.float().mean()) if values.numel() else None


def _foreground_score(images: torch.Tensor, fg: torch.Tensor) -> float | None:
    from foveal.saliency import foreground_score, spectral_residual

    with torch.no_grad():
        return _mean(foreground_score(spectral_residual(images), fg))


@dataclass
class _Run:
    adversarial: torch.Tensor
    predictions: torch.Tensor
    norms: dict[str, torch.Tensor]


def _run_batches(ctx: CellContext, call: Callable[[slice], Any]) -> _Run:
    advs, preds = [], []
    norms: dict[str, list[torch.Tensor]] = {}
    for sl in ctx.slices():
        result = call(sl)
        advs.append(result.adversarial.detach())
        preds.append(result.predictions.detach())
        for region, values in result.norms.items():
            norms.setdefault(region, []).append(values.detach().float())
    return _Run(torch.cat(advs), torch.cat(preds), {k: torch.cat(v) for k, v in norms.items()})


def _measure(
    ctx: CellContext, name: str, run: _Run, foreground: torch.Tensor | None = None
) -> dict[str, Any]:
    y = ctx.labels
    clean_ok = ctx.clean_predictions(name) == y
    correct = run.predictions == y
    fg = ctx.default_foreground() if foreground is None else foreground
    metrics: dict[str, Any] = {
        "accuracy": _mean(correct),
        "clean_accuracy": _mean(clean_ok),
        "success_rate": _mean(~correct[clean_ok]),
        "norms": {
            region: {"mean": float(v.mean()), "max": float(v.max())}
            for region, v in run.norms.items()
            if v.numel()
        },
        "foreground_score": _foreground_score(run.adversarial, fg),
        "foreground_score_clean": _foreground_score(ctx.images, fg),
    }
    record: dict[str, Any] = {"metrics": metrics, "correct": _bool_string(correct)}
    if ctx.detectors:
        fooled = (clean_ok & ~correct).cpu()
        detection = {}
        for det in ctx.detectors:
            flags = _detect(det, run.adversarial)
            detection[det.name] = {"rate": _mean(flags), "rate_fooling": _mean(flags[fooled])}
        record["detection"] = detection
    return record


def _detect(det: LoadedDetector, images: torch.Tensor) -> torch.Tensor:
    flags = det.detector.detect(images)
    if not isinstance(flags, torch.Tensor):
        flags = torch.as_tensor(flags)
    flags = flags.detach().cpu().reshape(-1)
    if flags.shape[0] != images.shape[0]:
        raise ValueError(
            f"detector {det.name!r}: detect() must return ({images.shape[0]},) flags; got shape "
            f"{tuple(flags.shape)}"
        )
    return flags.bool()


# ------------------------------------------------------------------------------ examples
def _save_examples(
    ctx: CellContext,
    key: str,
    attacker: Any,
    adversarial: torch.Tensor,
    mask: torch.Tensor | None,
    extra: dict[str, torch.Tensor],
) -> str | None:
    """Save the example rows (original, adversarial, magnified perturbation, mask, fixation
    saliency of the adversarial image, square-root scaled) of the first images as uint8;
    returns the path relative to the output directory."""
    k = min(ctx.examples, ctx.images.shape[0])
    if k == 0:
        return None
    from safetensors.torch import save_file

    from foveal.app.grids import example_rows
    from foveal.io import atomic_path
    from foveal.saliency import normalize_maps, spectral_residual

    x = ctx.images[:k]
    batch: dict[str, torch.Tensor] = {}
    if mask is not None:
        batch["mask"] = mask[:k]
    rows = example_rows(attacker, x, adversarial[:k], batch, {k2: v[:k] for k2, v in extra.items()})
    with torch.no_grad():
        # square-root scaled: the density is peaked, its low values would all look black
        saliency = normalize_maps(spectral_residual(adversarial[:k])).sqrt().float().cpu()
    rows.append(saliency.expand(-1, 3, -1, -1))
    stacked = torch.stack([r.float().cpu() for r in rows])
    u8 = (stacked.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
    rel = f"examples/{key}.safetensors"
    path = ctx.out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"rows": u8}, str(tmp))
    return rel


# ------------------------------------------------------------------------------ families
def _probe(ctx: CellContext, cell: Cell) -> dict[str, Any]:
    model = ctx.models[cell.model]
    k = min(PROBE_IMAGES, ctx.images.shape[0])
    x, y = ctx.images[:k], ctx.labels[:k]
    with eval_mode(model):
        with torch.no_grad():
            out1 = model(x).float()
            out2 = model(x).float()
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xg)
            loss = F.cross_entropy(logits, y, reduction="sum")
            grad = None
            if loss.requires_grad:
                (grad,) = torch.autograd.grad(loss, xg, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(x)
    per_image = grad.detach().abs().flatten(1).amax(1)
    sums = out1.sum(1)
    looks_like_probabilities = bool(
        out1.numel()
        and float(out1.min()) >= -1e-6
        and float(out1.max()) <= 1 + 1e-6
        and float((sums - 1).abs().max()) <= 1e-3
    )
    metrics: dict[str, Any] = {
        "images": k,
        "zero_gradient_fraction": _mean(per_image == 0),
        "gradient_max_median": float(per_image.median()) if k else None,
        "output_min": float(out1.min()) if k else None,
        "output_max": float(out1.max()) if k else None,
        "row_sum_max_deviation": float((sums - 1).abs().max()) if k else None,
        "looks_like_probabilities": looks_like_probabilities,
        "nondeterminism": float((out1 - out2).abs().max()) if k else 0.0,
        "finite": bool(torch.isfinite(out1).all()),
    }
    record: dict[str, Any] = {"metrics": metrics}
    if ctx.detectors:
        record["detection"] = {
            d.name: {"false_positive_rate": _mean(_detect(d, ctx.images))} for d in ctx.detectors
        }
    return record


def _attacked(
    ctx: CellContext,
    cell: Cell,
    key: str,
    attack: Any,
    call: Callable[[slice], Any] | None = None,
    *,
    foreground: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], _Run]:
    """Run ``call`` (default: ``attack`` on each batch) over the images, measure the cell and,
    when the cell keeps examples, save its example rows (``mask`` defaults to the data's)."""
    if call is None:

        def call(sl: slice) -> Any:
            return attack.run(ctx.images[sl], ctx.labels[sl])

    run = _run_batches(ctx, call)
    record = _measure(ctx, cell.model, run, foreground=foreground)
    if cell.examples:
        rows_mask = ctx.masks if mask is None else mask
        record["examples"] = _save_examples(
            ctx, key, attack, run.adversarial, rows_mask, extra or {}
        )
    return record, run


def _clean(ctx: CellContext, cell: Cell) -> dict[str, Any]:
    correct = ctx.clean_predictions(cell.model) == ctx.labels
    return {"metrics": {"accuracy": _mean(correct)}, "correct": _bool_string(correct)}


def _pgd(ctx: CellContext, cell: Cell, key: str) -> dict[str, Any]:
    from foveal.attacks import PGD

    s = cell.settings
    attack = PGD(
        ctx.models[cell.model],
        eps=s["eps"],
        norm=s["norm"],
        steps=s["steps"],
        restarts=s["restarts"],
        seed=ctx.seed,
    )
    return _attacked(ctx, cell, key, attack)[0]


def _dual(ctx: CellContext, cell: Cell, key: str) -> dict[str, Any]:
    from foveal.attacks import DualPerturbation

    s = cell.settings
    attack = DualPerturbation(
        ctx.models[cell.model],
        eps_fg=s["eps_fg"],
        eps_bg=s["eps_bg"],
        norm=s["norm"],
        lam=s["lam"],
        steps=s["steps"],
        seed=ctx.seed,
    )
    masks = ctx.salient(s["masks"])

    def call(sl: slice) -> Any:
        return attack.run(ctx.images[sl], ctx.labels[sl], masks=masks[sl])

    return _attacked(
        ctx, cell, key, attack, call, foreground=masks, mask=masks, extra={"masks": masks}
    )[0]


def _sip(ctx: CellContext, cell: Cell, key: str) -> dict[str, Any]:
    from foveal.attacks import PGD
    from foveal.threats import frozen

    s = cell.settings
    salient = ctx.salient(s["masks"])
    attack = PGD(
        ctx.models[cell.model], eps=s["eps"], norm=s["norm"], steps=s["steps"], seed=ctx.seed
    )

    def call(sl: slice) -> Any:
        threat = frozen(salient[sl], s["eps"], s["norm"])
        return attack.run(ctx.images[sl], ctx.labels[sl], threat=threat)

    return _attacked(ctx, cell, key, attack, call, foreground=salient, mask=salient)[0]


def _sai(ctx: CellContext, cell: Cell, key: str) -> dict[str, Any]:
    from foveal.app.evaluation.config import TransformSpec
    from foveal.attacks import BIM, SAIFGM, sai_budget
    from foveal.defenses import InputTransform

    s = cell.settings
    model = ctx.models[cell.model]
    attack: Any
    eps = sai_budget(s["delta"], ctx.images.shape)
    if s["attack"] == "sai-fgm":
        attack = SAIFGM(
            model,
            delta=s["delta"],
            steps=s["steps"],
            size=s["size"],
            beta=s["beta"],
            phi=s["phi"],
            seed=ctx.seed,
        )
    else:
        attack = BIM(model, norm="l2", eps=eps, steps=s["steps"], seed=ctx.seed)
    record, run = _attacked(ctx, cell, key, attack)
    record["metrics"]["l2_budget"] = eps
    y = ctx.labels
    transforms: dict[str, Any] = {}
    for raw in s["transforms"]:
        spec = TransformSpec(**raw)
        defended = InputTransform(model, spec.build())
        clean_ok = ctx.predict(defended, ctx.images) == y
        adv_ok = ctx.predict(defended, run.adversarial) == y
        transforms[spec.label] = {
            "accuracy": _mean(adv_ok),
            "clean_accuracy": _mean(clean_ok),
            "success_rate": _mean(~adv_ok[clean_ok]),
        }
    record["transforms"] = transforms
    return record


def _perceptual(ctx: CellContext, cell: Cell, key: str) -> dict[str, Any]:
    from foveal.attacks import PerceptualBall

    s = cell.settings
    attack = PerceptualBall(ctx.models[cell.model], eps=s["eps"], steps=s["steps"], seed=ctx.seed)
    return _attacked(ctx, cell, key, attack)[0]


def _autoattack(ctx: CellContext, cell: Cell, key: str) -> dict[str, Any]:
    from foveal.attacks import AutoAttack

    s = cell.settings
    attack = AutoAttack(
        ctx.models[cell.model],
        eps=s["eps"],
        norm=s["norm"],
        steps=s["steps"],
        n_queries=s["n_queries"],
        seed=ctx.seed,
    )
    return _attacked(ctx, cell, key, attack)[0]


def _transfer(ctx: CellContext, cell: Cell) -> dict[str, Any]:
    from foveal.attacks import PGD, DualPerturbation

    s = cell.settings
    source = ctx.models[cell.model]
    attack: Any
    if s["attack"] == "pgd":
        attack = PGD(source, eps=s["eps"], steps=s["steps"], seed=ctx.seed)
        run = _run_batches(ctx, lambda sl: attack.run(ctx.images[sl], ctx.labels[sl]))
    else:
        masks = ctx.salient(s["masks"])
        attack = DualPerturbation(
            source,
            eps_fg=s["eps_fg"],
            eps_bg=s["eps_bg"],
            lam=s["lam"],
            steps=s["steps"],
            seed=ctx.seed,
        )
        run = _run_batches(
            ctx, lambda sl: attack.run(ctx.images[sl], ctx.labels[sl], masks=masks[sl])
        )
    y = ctx.labels
    source_ok = run.predictions == y
    targets: dict[str, Any] = {}
    for name in s["targets"]:
        ok = ctx.predict(ctx.models[name], run.adversarial) == y
        clean_ok = ctx.clean_predictions(name) == y
        targets[name] = {
            "accuracy": _mean(ok),
            "clean_accuracy": _mean(clean_ok),
            "success_rate": _mean(~ok[clean_ok]),
            "correct": _bool_string(ok),
        }
    return {
        "metrics": {"source_accuracy": _mean(source_ok)},
        "targets": targets,
    }


def compute_cell(cell: Cell, key: str, ctx: CellContext) -> dict[str, Any]:
    """Run ``cell`` and return its result fields (``metrics``, ``correct`` and, per family,
    ``transforms``, ``targets``, ``detection``, ``examples``)."""
    torch.manual_seed(ctx.seed)
    family = cell.family
    if family == "probe":
        return _probe(ctx, cell)
    if family == "clean":
        return _clean(ctx, cell)
    if family == "transfer":
        return _transfer(ctx, cell)
    runners: dict[str, Callable[[CellContext, Cell, str], dict[str, Any]]] = {
        "pgd": _pgd,
        "dual": _dual,
        "sip": _sip,
        "sai": _sai,
        "perceptual": _perceptual,
        "autoattack": _autoattack,
    }
    if family not in runners:
        raise ValueError(f"unknown cell family {family!r}")
    return runners[family](ctx, cell, key)
