"""What computing a cell needs: the evaluation batch, and running and measuring an attack on it.

Every attack cell records (:func:`attack_record`) ``accuracy`` (robust accuracy) and
``clean_accuracy``; ``success_rate`` (the fraction of the correctly classified clean images that
the attack turns into errors; None when there are none); ``norms`` (mean and max size of the
perturbation per region); ``foreground_score`` / ``foreground_score_clean`` (mean
fixation-density mass inside the foreground, Tong et al. 2020: the attack's own, else the data's
masks, else the half-range fixation masks); ``correct`` (per image ``"1"`` if still classified
correctly) and, with detectors, ``detection`` (the fraction flagged: all, and those that fool).

Attacks run batch by batch through :func:`foveal.batching.map_batches`, seeded with the run's
seed (per-image generators), and torch is re-seeded before each cell, so a cell's result does
not depend on the cells that ran before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.app.evaluation.models import LoadedDetector
from foveal.app.evaluation.results import Record
from foveal.batching import Batch, map_batches, predict

__all__ = ["CellContext", "Run", "attack_record", "bool_string", "mean"]


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

    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return predict(model, images, batch_size=self.batch_size)

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

    def record(
        self, cell: Any, key: str, record_type: type[Record] = Record, **fields: Any
    ) -> Record:
        """The record of ``cell`` (a :class:`~foveal.app.evaluation.family.Cell`) with
        ``fields``."""
        import foveal

        head = {"key": key, **cell.describe(), "seed": self.seed, "n": int(self.images.shape[0])}
        return record_type(**(head | fields), foveal_version=foveal.__version__)

    def detect(self, det: LoadedDetector, images: torch.Tensor) -> torch.Tensor:
        flags = det.detector.detect(images)
        if not isinstance(flags, torch.Tensor):
            flags = torch.as_tensor(flags)
        flags = flags.detach().cpu().reshape(-1)
        if flags.shape[0] != images.shape[0]:
            raise ValueError(
                f"detector {det.name!r}: detect() must return ({images.shape[0]},) flags; got "
                f"shape {tuple(flags.shape)}"
            )
        return flags.bool()


def bool_string(values: torch.Tensor) -> str:
    return "".join("1" if bool(v) else "0" for v in values.flatten().tolist())


def mean(values: torch.Tensor) -> float | None:
    return float(values.float().mean()) if values.numel() else None


def _foreground_score(images: torch.Tensor, fg: torch.Tensor) -> float | None:
    from foveal.saliency import foreground_score, spectral_residual

    with torch.no_grad():
        return mean(foreground_score(spectral_residual(images), fg))


@dataclass
class Run:
    """An attack's adversarial images, their predictions and perturbation sizes per region."""

    adversarial: torch.Tensor
    predictions: torch.Tensor
    norms: dict[str, torch.Tensor]

    @classmethod
    def of(
        cls,
        ctx: CellContext,
        attack: Any,
        masks: torch.Tensor | None = None,
        call: Callable[[Batch], Any] | None = None,
    ) -> Run:
        """Run ``attack`` on every batch of the images: ``attack.run(x, y, masks=...)`` (with
        ``masks``, one row per image), or ``call(batch)``."""

        def step(batch: Batch) -> Run:
            if call is not None:
                result = call(batch)
            elif "mask" in batch:
                result = attack.run(batch["image"], batch["label"], masks=batch["mask"])
            else:
                result = attack.run(batch["image"], batch["label"])
            norms = {k: v.detach().float() for k, v in result.norms.items()}
            return cls(result.adversarial.detach(), result.predictions.detach(), norms)

        data = {"image": ctx.images, "label": ctx.labels}
        if masks is not None:
            data["mask"] = masks
        return map_batches(step, data, batch_size=ctx.batch_size)


def attack_record(
    ctx: CellContext,
    cell: Any,
    key: str,
    attack: Any,
    run: Run,
    masks: torch.Tensor | None = None,
    extra: dict[str, torch.Tensor] | None = None,
    **fields: Any,
) -> Record:
    """Measure ``run`` (see the module docstring) and, when the cell keeps examples, save its
    example rows. ``masks``: the attack's regions (the foreground of the score and the mask
    row; default: the data's); ``extra``: what the attack's mask row needs; ``fields``: more
    record fields (``record_type=``: a family's record class)."""
    y = ctx.labels
    clean_ok = ctx.clean_predictions(cell.model) == y
    correct = run.predictions == y
    masks = ctx.masks if masks is None else masks
    fg = ctx.fixation_masks() if masks is None else masks
    metrics: dict[str, Any] = {
        "accuracy": mean(correct),
        "clean_accuracy": mean(clean_ok),
        "success_rate": mean(~correct[clean_ok]),
        "norms": {
            region: {"mean": float(v.mean()), "max": float(v.max())}
            for region, v in run.norms.items()
            if v.numel()
        },
        "foreground_score": _foreground_score(run.adversarial, fg),
        "foreground_score_clean": _foreground_score(ctx.images, fg),
    }
    detection = None
    if ctx.detectors:
        fooled = (clean_ok & ~correct).cpu()
        detection = {}
        for det in ctx.detectors:
            flags = ctx.detect(det, run.adversarial)
            detection[det.name] = {"rate": mean(flags), "rate_fooling": mean(flags[fooled])}
    if cell.examples:
        fields["examples"] = _save_examples(ctx, key, attack, run.adversarial, masks, extra or {})
    return ctx.record(
        cell, key, metrics=metrics, correct=bool_string(correct), detection=detection, **fields
    )


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
