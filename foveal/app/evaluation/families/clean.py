"""``probe`` (the measurements the model-level sanity checks read) and ``clean`` accuracy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from foveal._modes import eval_mode
from foveal.app.evaluation.cells import CellContext, bool_string, mean
from foveal.app.evaluation.config import EvaluateConfig
from foveal.app.evaluation.family import Cell, Family, register
from foveal.app.evaluation.results import Record
from foveal.app.evaluation.sanity import SanityWarning, pct

#: Images the probe looks at.
PROBE_IMAGES = 64


@register
class Probe(Family[Any]):
    """Measurements for the sanity checks: input gradients, outputs, determinism (64 images)."""

    name = "probe"
    order = 0
    listed = False

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        return [Cell("probe", model, {}, "sanity probe")]

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        model = ctx.models[cell.model]
        k = min(PROBE_IMAGES, ctx.images.shape[0])
        x, y = ctx.images[:k], ctx.labels[:k]
        with eval_mode(model):
            with torch.no_grad():
                out1 = model(x).float()
                out2 = model(x).float()
            xg = x.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(xg), y, reduction="sum")
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
            "zero_gradient_fraction": mean(per_image == 0),
            "gradient_max_median": float(per_image.median()) if k else None,
            "output_min": float(out1.min()) if k else None,
            "output_max": float(out1.max()) if k else None,
            "row_sum_max_deviation": float((sums - 1).abs().max()) if k else None,
            "looks_like_probabilities": looks_like_probabilities,
            "nondeterminism": float((out1 - out2).abs().max()) if k else 0.0,
            "finite": bool(torch.isfinite(out1).all()),
        }
        detection = {
            d.name: {"false_positive_rate": mean(ctx.detect(d, ctx.images))} for d in ctx.detectors
        }
        return ctx.record(cell, key, metrics=metrics, detection=detection or None)

    def warnings(self, record: Record) -> list[SanityWarning]:
        m, found = record.metrics, {}
        zero, nondet = m.get("zero_gradient_fraction"), m.get("nondeterminism") or 0.0
        scale = max(1.0, abs(m.get("output_max") or 0.0), abs(m.get("output_min") or 0.0))
        if zero:
            found["vanishing-gradients"] = (
                f"{pct(zero)} of {m.get('images')} probed images have an all-zero input gradient "
                "of the cross-entropy loss; gradient-based attacks cannot make progress there, "
                "so their robust accuracy overstates robustness"
            )
        if m.get("looks_like_probabilities"):
            found["probabilities"] = (
                f"the outputs lie in [{m.get('output_min'):.3g}, {m.get('output_max'):.3g}] and "
                "each row sums to 1: the model seems to return probabilities; attacks need "
                "logits (remove the final softmax)"
            )
        if nondet > 1e-5 * scale:
            found["randomized-model"] = (
                f"two forward passes on the same images differ by up to {nondet:.3g}: the model "
                "is randomised, so single-sample gradients are noisy; evaluate it with "
                "expectation over the randomness (EOT)"
            )
        if m.get("finite") is False:
            found["non-finite-outputs"] = "the model returns NaN or infinite values on clean images"
        return [SanityWarning(check, record.model, message) for check, message in found.items()]


@register
class Clean(Family[Any]):
    """Clean accuracy (keyed without the detectors: it does not look at them)."""

    name = "clean"
    order = 10

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        return [Cell("clean", model, {}, "clean")]

    def key_payload(self, cell: Cell, fingerprints: dict[str, Any]) -> dict[str, Any]:
        return {}

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        correct = ctx.clean_predictions(cell.model) == ctx.labels
        return ctx.record(
            cell, key, metrics={"accuracy": mean(correct)}, correct=bool_string(correct)
        )
