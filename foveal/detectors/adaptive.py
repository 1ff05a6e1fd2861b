"""White-box attacks on the CNN detectors (the SMD/SPD paper, section 3.7, Algorithms 1-3) and
detector adversarial training (the SMD/SPD paper, Table 3).

:class:`AdaptiveAttack` runs on foveal's attack engine (validation, the Linf set, projection,
mode restoring and success bookkeeping come from :class:`~foveal.attacks.Attack`). Two modes:

- ``"alternate"`` (Algorithms 1-3, and Eq. 3-4 for ID): each iteration takes a classifier step
  ``x <- x + alpha sign(grad CE(f(x), y))`` on the images the classifier still gets right, then a
  detector step ``x <- x - alpha sign(grad d(x))`` on the images the detector still flags
  (``d`` is the detector's log-odds of "adversarial"), projecting onto the budget after each.
  The SMD/SPD paper runs ``T = 5`` iterations, ``n`` times; here ``steps`` (T) x ``repeats`` (n).
  The detector gradient is taken as in Algorithms 1-3 (``gradient="input"``: with respect to the
  detector's own input, broadcast over the colour channels for SMD) or through the whole
  pipeline including the masking model (``gradient="full"``, default; stronger, since the
  masking model is differentiable). See :meth:`~foveal.detectors.CNNDetector.input_gradient`.
- ``"combined"``: one objective, ``CE(f(x), y) + weight * min(-d(x), kappa)`` (the detector's
  negated log-odds, capped so that the classification term takes over once the detector is
  fooled with margin ``kappa``; :class:`DetectorEvasion` is an
  :class:`~foveal.attacks.Objective` term that any attack can use), climbed with sign steps
  (Metzen et al.'s simultaneous variant, the SMD/SPD paper's Eq. 5, as an objective).

The SMD/SPD paper bounds the white-box attack only by the pixel range; here the Linf budget ``eps``
of the engine bounds it too (the SMD/SPD paper's BIM/MIM budget 0.15 on MNIST by default), so it is
a threat model that can be compared with the black-box attacks.

:func:`adversarial_training` alternates the attack and detector fitting: each round attacks the
current detector on the clean training images and continues training it on clean versus
(black-box + white-box) adversarial images. Only the white-box images that fool the classifier
are added (by default): the others are not adversarial examples, and labelling near-clean images
"adversarial" teaches the detector to flag clean images.

Written by hand on foveal's engine: no library attacks these detectors.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from foveal._validation import check_eps, check_images, check_labels
from foveal.attacks.base import Attack, Problem
from foveal.attacks.objectives import CrossEntropy, Objective, ObjectiveContext
from foveal.batching import predict
from foveal.detectors.base import collect_images
from foveal.detectors.cnn import GRADIENT_MODES, CNNDetector

__all__ = [
    "AdaptiveAttack",
    "AdversarialTrainingResult",
    "DetectorEvasion",
    "adversarial_training",
    "evasion_report",
]

logger = logging.getLogger(__name__)

MODES = ("alternate", "combined")


class DetectorEvasion(Objective):
    """Objective term ``-log_odds(detector, x + delta)`` (N,): climbing it hides from the
    detector. Differentiable through the detector's input pipeline (the masking model for
    SMD / SPD).

    Args:
        detector: a fitted CNN detector (ID, JSD, SMD or SPD).
        kappa: stop rewarding once the log-odds are below ``-kappa`` (default: no cap).

    Example:
        >>> from foveal.attacks import PGD, CrossEntropy
        >>> # PGD(model, objective=CrossEntropy() + 1.0 * DetectorEvasion(detector))
    """

    def __init__(self, detector: CNNDetector, *, kappa: float = math.inf) -> None:
        if not isinstance(detector, CNNDetector):
            raise TypeError(f"detector must be a CNNDetector; got {type(detector).__name__}")
        if not kappa >= 0:
            raise ValueError(f"kappa must be >= 0; got {kappa!r}")
        self.detector = detector
        self.kappa = float(kappa)

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        x = ctx.adversarial.clamp(0, 1)
        value = -self.detector.log_odds(x, differentiable=True).to(ctx.logits.device)
        return value.clamp(max=self.kappa) if math.isfinite(self.kappa) else value

    def __repr__(self) -> str:
        return f"DetectorEvasion({self.detector.name}, kappa={self.kappa:g})"


class AdaptiveAttack(Attack):
    """White-box attack on a classifier and its CNN detector (see the module docstring).

    Args:
        model: the classifier (taking [0,1] images, returning logits).
        detector: the fitted CNN detector to evade.
        eps: Linf budget (default 0.15, the SMD/SPD paper's BIM budget on MNIST).
        alpha: step size (default ``eps / 10``, the SMD/SPD paper's BIM step).
        steps: T, iterations of the inner loop (default 5, the SMD/SPD paper).
        repeats: n, repetitions of the inner loop (default 4).
        mode: ``"alternate"`` (Algorithms 1-3) or ``"combined"`` (one objective).
        gradient: ``"full"`` or ``"input"`` (Algorithms 1-3) detector gradient (alternate).
        weight: weight of the detector term in ``"combined"`` mode.
        kappa: cap of the detector term in ``"combined"`` mode (default 2).
        seed: unused (the attack is deterministic); kept for the engine's interface.

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import foveal
        >>> from foveal.detectors import ImageDetector
        >>> clf = foveal.models.create("mnist-cnn", in_channels=1).eval()
        >>> x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
        >>> det = ImageDetector(width=0.25, epochs=1).fit(x, (x + 0.1).clamp(0, 1))
        >>> x_adv = AdaptiveAttack(clf, det, eps=0.1, steps=2, repeats=1)(x, y)
        >>> bool(((x_adv - x).abs().amax() <= 0.1 + 1e-6).item())
        True
    """

    name = "adaptive"

    def __init__(
        self,
        model: nn.Module,
        detector: CNNDetector,
        *,
        eps: float = 0.15,
        alpha: float | None = None,
        steps: int = 5,
        repeats: int = 4,
        mode: str = "alternate",
        gradient: str = "full",
        weight: float = 1.0,
        kappa: float = 2.0,
        seed: int | None = 0,
    ) -> None:
        if not isinstance(detector, CNNDetector):
            raise TypeError(f"detector must be a CNNDetector; got {type(detector).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if gradient not in GRADIENT_MODES:
            raise ValueError(f"gradient must be one of {GRADIENT_MODES}; got {gradient!r}")
        for key, value in (("steps", steps), ("repeats", repeats)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1; got {value!r}")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight must be a finite number >= 0; got {weight!r}")
        objective: Objective = CrossEntropy()
        if mode == "combined":
            objective = CrossEntropy() + weight * DetectorEvasion(detector, kappa=kappa)
        super().__init__(model, eps=eps, norm="linf", objective=objective, seed=seed)
        self.detector = detector
        self.alpha = check_eps(self.eps / 10 if alpha is None else alpha, "alpha")
        self.steps = steps
        self.repeats = repeats
        self.mode = mode
        self.gradient = gradient
        self.weight = float(weight)
        self.kappa = float(kappa)

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        x = problem.images
        bound = problem.threat
        det = self.detector
        for _ in range(self.steps * self.repeats):
            if self.mode == "combined":
                grad, _ = problem.gradient(delta)
                delta = bound.project_(delta.add_(self.alpha * grad.sign()))
                continue
            grad, _, logits = problem.gradient_and_logits(delta)
            active = ~problem.is_success(logits.argmax(1))
            step = self.alpha * grad.sign() * active.view(-1, 1, 1, 1)
            delta = bound.project_(delta.add_(step))
            xa = (x + delta).clamp(0, 1)
            with torch.no_grad():
                flagged = (det.log_odds(xa) > det.threshold).to(x.device)
            if not bool(flagged.any()):
                continue
            g = det.input_gradient(xa, mode=self.gradient).to(x.device)
            delta = bound.project_(delta.sub_(self.alpha * g.sign() * flagged.view(-1, 1, 1, 1)))
        return delta

    def config(self) -> dict[str, Any]:
        out = super().config()
        out.pop("detector", None)
        out["detector"] = self.detector.name
        return out


def evasion_report(
    model: nn.Module,
    detector: Any,
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, float]:
    """How an attack fares against a classifier and a detector.

    Returns:
        ``misclassified`` (fraction of adversarial images misclassified), ``detected``
        (fraction flagged), ``evaded`` (misclassified and not flagged), ``clean_flagged``
        (false-positive rate on ``clean``), ``accuracy`` (detection accuracy on the balanced
        set clean + adversarial, the quantity the SMD/SPD paper reports) and ``auc`` (ROC AUC of the
        scores, clean vs adversarial: threshold-free).
    """
    from sklearn.metrics import roc_auc_score

    x = check_images(clean, "clean")
    xa = check_images(adversarial, "adversarial")
    y = check_labels(labels, x.shape[0])
    pred = predict(model, xa, batch_size=256).cpu()
    adv_scores, clean_scores = detector.score(xa), detector.score(x)
    flagged = adv_scores > detector.threshold
    false_pos = clean_scores > detector.threshold
    wrong = pred != y.cpu()
    truth = torch.cat([torch.zeros(len(clean_scores)), torch.ones(len(adv_scores))])
    auc = float(roc_auc_score(truth.numpy(), torch.cat([clean_scores, adv_scores]).numpy()))
    return {
        "misclassified": float(wrong.float().mean()),
        "detected": float(flagged.float().mean()),
        "evaded": float((wrong & ~flagged).float().mean()),
        "clean_flagged": float(false_pos.float().mean()),
        "accuracy": 0.5 * (float(flagged.float().mean()) + 1 - float(false_pos.float().mean())),
        "auc": auc,
    }


@dataclass
class AdversarialTrainingResult:
    """What :func:`adversarial_training` returns: the detector and one record per round."""

    detector: CNNDetector
    history: list[dict[str, float]] = field(default_factory=list)


def adversarial_training(
    detector: CNNDetector,
    model: nn.Module,
    clean: object,
    labels: torch.Tensor,
    adversarial: object,
    *,
    rounds: int = 3,
    epochs: int | None = None,
    attack_kwargs: dict[str, Any] | None = None,
    successful_only: bool = True,
) -> AdversarialTrainingResult:
    """Alternate the adaptive attack and detector fitting (the SMD/SPD paper, Table 3).

    Args:
        detector: a fitted CNN detector; trained further in place.
        model: the classifier.
        clean: clean training images (N,C,H,W) and their true ``labels`` (N,).
        adversarial: the black-box adversarial images the detector was fitted on.
        rounds: attack / fit alternations (default 3).
        epochs: epochs per round (default: the detector's ``epochs``).
        attack_kwargs: keywords of :class:`AdaptiveAttack` (budget, steps, mode, gradient).
        successful_only: add only the white-box images that fool the classifier (paired with
            their clean images, so the classes stay balanced).

    Returns:
        :class:`AdversarialTrainingResult`; each record has the round, the detection rate of
        the round's white-box images before and after refitting (all of them, and those that
        fool the classifier), how many were added, and the training loss.
    """

    x = collect_images(clean, "clean")
    y = check_labels(labels, x.shape[0])
    x_bb = collect_images(adversarial, "adversarial")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1; got {rounds!r}")
    detector._require_fitted()
    kwargs = dict(attack_kwargs or {})
    saved_epochs = detector.epochs
    result = AdversarialTrainingResult(detector=detector)
    try:
        if epochs is not None:
            detector.epochs = epochs
        for r in range(rounds):
            white = AdaptiveAttack(model, detector, **kwargs)(x, y)
            fooled = predict(model, white, batch_size=256).cpu() != y.cpu()
            keep = fooled if successful_only else torch.ones_like(fooled)
            flagged = detector.detect(white)
            before = float(flagged.float().mean())
            before_fooled = float(flagged[fooled].float().mean()) if fooled.any() else math.nan
            detector.fit(torch.cat([x, x[keep]]), torch.cat([x_bb, white[keep]]), warm_start=True)
            flagged = detector.detect(white)
            record = {
                "round": r + 1,
                "white_box_detected_before": before,
                "white_box_detected_after": float(flagged.float().mean()),
                "fooling_detected_before": before_fooled,
                "fooling_detected_after": (
                    float(flagged[fooled].float().mean()) if fooled.any() else math.nan
                ),
                "added": int(keep.sum()),
                "clean_flagged": float(detector.detect(x).float().mean()),
                "loss": detector.history[-1]["loss"],
            }
            result.history.append(record)
            logger.info("detector adversarial training: %s", record)
    finally:
        detector.epochs = saved_epochs
    return result
