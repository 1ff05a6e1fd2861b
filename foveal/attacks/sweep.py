"""Epsilon sweeps: one attack over a list of budgets, success per budget and sample.

Like foolbox's epsilon sweeps (success of shape (K, N)), but returned as one named dataclass with
robust accuracy per budget. Budgets are numbers (the attack's own norm ball of that radius) or
whole perturbation sets (e.g. a list of ``dual`` sets with growing background budgets). Relative
step sizes (the default) scale with the budget, so one attack object serves every budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from foveal._validation import check_images, check_labels
from foveal.attacks.base import Attack
from foveal.threats import Threat, ball

__all__ = ["SweepResult", "sweep"]


@dataclass(frozen=True)
class SweepResult:
    """Result of :func:`sweep` over K budgets and N samples.

    Attributes:
        budgets: the K budgets as given (numbers, or ``repr`` of the sets).
        success: (K, N) bool, the attack's success per budget and sample.
        predictions: (K, N) predicted classes on the adversarial images.
        robust_accuracy: (K,) fraction of samples still classified correctly.
        clean_accuracy: accuracy on the clean images.
    """

    budgets: tuple[float | str, ...]
    success: torch.Tensor
    predictions: torch.Tensor
    robust_accuracy: torch.Tensor
    clean_accuracy: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (budgets, robust accuracy and success rate per budget)."""
        return {
            "budgets": list(self.budgets),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": [float(a) for a in self.robust_accuracy],
            "success_rate": [float(s) for s in self.success.float().mean(1)],
        }


def sweep(
    attack: Attack,
    images: torch.Tensor,
    labels: torch.Tensor,
    budgets: Sequence[float | Threat],
    *,
    target: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
) -> SweepResult:
    """Run ``attack`` once per budget.

    Args:
        attack: any attack.
        images: (N,C,H,W) in [0,1].
        labels: (N,) true labels.
        budgets: K numbers (radii of ``attack.norm`` balls) or K perturbation sets.
        target: (N,) target labels for targeted attacks.
        masks: per-image masks for an attack that reads them (passed to every run).

    Returns:
        :class:`SweepResult` with ``success`` (K, N) and ``robust_accuracy`` (K,).

    Example:
        >>> from torch import nn
        >>> from foveal.attacks import PGD
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(5, 3, 8, 8), torch.randint(0, 4, (5,))
        >>> res = sweep(PGD(model, steps=3), x, y, [0.0, 2 / 255, 8 / 255])
        >>> res.success.shape, res.robust_accuracy.shape
        (torch.Size([3, 5]), torch.Size([3]))
    """
    x = check_images(images, "images")
    y = check_labels(labels, x.shape[0], name="labels").to(x.device)
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Sequence) or not budgets:
        raise ValueError(
            f"budgets must be a non-empty sequence of numbers or sets; got {budgets!r}"
        )
    clean = attack.predict(x)
    successes: list[torch.Tensor] = []
    predictions: list[torch.Tensor] = []
    names: list[float | str] = []
    for budget in budgets:
        if isinstance(budget, Threat):
            threat: Threat = budget
            names.append(repr(budget))
        else:
            threat = ball(attack.norm, budget)  # validates the number
            names.append(float(budget))
        result = attack.run(x, y, target=target, threat=threat, masks=masks)
        successes.append(result.success)
        predictions.append(result.predictions)
    preds = torch.stack(predictions)
    n = max(x.shape[0], 1)
    return SweepResult(
        budgets=tuple(names),
        success=torch.stack(successes),
        predictions=preds,
        robust_accuracy=(preds == y[None]).float().sum(1) / n,
        clean_accuracy=float((clean == y).float().sum()) / n,
    )
