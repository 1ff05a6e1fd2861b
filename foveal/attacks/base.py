"""The attack engine: one place owns the guarantees, each attack only its idea.

:class:`Attack` validates the inputs (range [0,1], NaN, shapes, labels against the model's
number of classes, budgets), binds the perturbation set to the batch, puts the model in eval mode
(restoring every module's mode afterwards, also on errors), draws the random start, runs the
algorithm, projects its result onto the set once more, keeps the per-sample best over restarts and
does the success bookkeeping. Subclasses implement :meth:`Attack.perturb` only, which receives a
:class:`Problem` (gradients, evaluation, step sizes, the bound set) and a starting perturbation.
No attack can therefore skip the mask, the budget or the box.

Randomness. The random start of sample ``i`` in restart ``r`` comes from its own CPU
``torch.Generator`` seeded with a hash of ``(seed, r, bytes of image i)``. The start therefore
depends on the image itself, not on its position or on the other images of the batch: attacking a
batch gives the same result as attacking each image alone, and a dataset gives the same result
whatever the batch size. Identical images get identical starts. ``seed=None`` draws a fresh seed
from torch's global generator at each call.

Written by hand because the guarantees above (exact membership, mode restoring, batch-independent
randomness, per-region norms) are what the rest of foveal relies on and no reference library
provides all of them.
"""

from __future__ import annotations

import abc
import hashlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import nn

from foveal._modes import eval_mode
from foveal._validation import check_eps, check_images, check_labels
from foveal.attacks.objectives import Objective, ObjectiveContext, ObjectiveLike, as_objective
from foveal.registry import Registry
from foveal.threats import BoundThreat, Threat, ball, parse_norm

__all__ = [
    "ATTACKS",
    "DEFAULT_EPS",
    "Attack",
    "AttackResult",
    "Problem",
    "eval_mode",
    "sample_generators",
]

#: Name -> attack class; drives the CLI and the tests.
ATTACKS: Registry[type[Attack]] = Registry("attack")

#: Default budget per norm when ``eps`` is not given.
DEFAULT_EPS = {"linf": 8 / 255, "l2": 0.5}


@dataclass(frozen=True)
class AttackResult:
    """What :meth:`Attack.run` returns.

    Attributes:
        adversarial: adversarial images (N,C,H,W), same dtype and device as the input.
        success: (N,) bool; untargeted: predicted class != label; targeted: == target.
        predictions: (N,) predicted classes on ``adversarial``.
        loss: (N,) final objective value (the quantity the attack maximised).
        norms: ``{region: (N,)}`` size of the perturbation per region in the set's norm.
    """

    adversarial: torch.Tensor
    success: torch.Tensor
    predictions: torch.Tensor
    loss: torch.Tensor
    norms: dict[str, torch.Tensor]

    @property
    def success_rate(self) -> float:
        """Fraction of samples on which the attack succeeded."""
        return float(self.success.float().mean()) if self.success.numel() else math.nan


def _image_keys(images: torch.Tensor) -> list[bytes]:
    """A digest of each image's bytes (the per-sample part of the random-start seed)."""
    raw = images.detach().to("cpu").contiguous()
    rows = raw.reshape(raw.shape[0], -1)
    if rows.dtype not in (torch.float16, torch.float32, torch.float64):
        rows = rows.to(torch.float32)
    array = rows.numpy()
    return [hashlib.blake2b(array[i].tobytes(), digest_size=16).digest() for i in range(len(array))]


def sample_generators(keys: list[bytes], seed: int, restart: int) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from ``(seed, restart, key)``."""
    salt = f"{seed}:{restart}".encode()
    gens = []
    for key in keys:
        digest = hashlib.blake2b(key, digest_size=8, person=b"foveal-start", salt=salt[:16])
        gens.append(torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") >> 1))
    return gens


class Problem:
    """What an attack algorithm sees for one batch.

    Attributes:
        model: the model (in eval mode while the attack runs).
        images: clean images (N,C,H,W).
        labels: the labels the objective uses (true labels, or targets when ``targeted``).
        true_labels: the true labels (N,).
        targeted: whether the attack is targeted.
        threat: the perturbation set bound to ``images``.
        objective: the objective to maximise.
        spec: the unbound set ``threat`` was bound from (``None`` if unknown); lets an attack
            re-bind the set to a subset of the batch (``spec.subset(index).bind(...)``).
    """

    def __init__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        true_labels: torch.Tensor,
        targeted: bool,
        threat: BoundThreat,
        objective: Objective,
        spec: Threat | None = None,
    ) -> None:
        self.model = model
        self.images = images
        self.labels = labels
        self.true_labels = true_labels
        self.targeted = targeted
        self.threat = threat
        self.objective = objective
        self.spec = spec
        self._checked = False

    def _forward(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        adversarial = self.images + delta
        logits = self.model(adversarial)
        if not self._checked:
            self._check_logits(logits)
        ctx = ObjectiveContext(
            self.model, self.images, delta, adversarial, logits, self.labels, self.targeted
        )
        loss = self.objective(ctx)
        if not self._checked:
            n = self.images.shape[0]
            if not isinstance(loss, torch.Tensor) or loss.shape != (n,):
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss)
                raise ValueError(
                    f"objective must return per-sample values of shape ({n},); got {shape}"
                )
            self._checked = True
        return loss, logits

    def _check_logits(self, logits: object) -> None:
        n = self.images.shape[0]
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != n:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(f"model must return logits of shape ({n}, classes); got {shape}")
        classes = int(logits.shape[1])
        check_labels(self.true_labels, n, classes, "labels")
        if self.targeted:
            check_labels(self.labels, n, classes, "target")

    def gradient(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the summed objective w.r.t. ``delta``, and the per-sample objective.

        Only the input gradient is computed (no parameter gradients are formed or stored).
        """
        grad, loss, _ = self.gradient_and_logits(delta)
        return grad, loss

    def gradient_and_logits(
        self, delta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`gradient`, also returning the logits (N,K) of the same forward pass."""
        d = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            loss, logits = self._forward(d)
            (grad,) = torch.autograd.grad(loss.sum(), d, allow_unused=True)
        if grad is None:
            warnings.warn(
                "the objective does not depend on the input; the attack gets zero gradients",
                RuntimeWarning,
                stacklevel=3,
            )
            grad = torch.zeros_like(d)
        return grad, loss.detach(), logits.detach()

    def evaluate(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample objective and logits at ``images + delta`` (no gradients)."""
        with torch.no_grad():
            loss, logits = self._forward(delta)
        return loss, logits

    def is_success(self, predictions: torch.Tensor) -> torch.Tensor:
        """(N,) bool: misclassified (untargeted) or classified as the target (targeted)."""
        return predictions == self.labels if self.targeted else predictions != self.labels

    def step_size(self, alpha: float | None, rel_alpha: float) -> torch.Tensor:
        """Absolute ``alpha`` everywhere, else ``rel_alpha`` times each region's budget."""
        if alpha is not None:
            return torch.tensor(alpha, device=self.images.device, dtype=self.images.dtype)
        return rel_alpha * self.threat.budget


class Attack(abc.ABC):
    """Base class of every attack; subclasses implement :meth:`perturb`.

    Calling an attack returns the adversarial images; :meth:`run` returns an
    :class:`AttackResult`. Both take the perturbation set per call (``threat=``) or use the
    attack's own ``norm`` ball of radius ``eps``.

    Args:
        model: a classifier taking images in [0,1] (N,C,H,W) and returning logits (N,K).
        eps: radius of the default ball (default: 8/255 for Linf, 0.5 for L2).
        norm: ``"linf"`` or ``"l2"``, the default ball's norm.
        objective: ``"ce"``, ``"margin"``, an :class:`Objective` or ``fn(logits, labels)``.
        random_start: start from a random point of the set instead of zero.
        restarts: number of runs; each sample keeps its best run (successful first, then
            highest objective).
        seed: seed of the random starts (``None``: a fresh one each call).
    """

    #: Registry name (set by each registered subclass).
    name: ClassVar[str] = ""

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        objective: ObjectiveLike = "ce",
        random_start: bool = False,
        restarts: int = 1,
        seed: int | None = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.norm = parse_norm(norm)
        self.eps = check_eps(DEFAULT_EPS[self.norm] if eps is None else eps, "eps")
        self.objective = as_objective(objective)
        self.random_start = bool(random_start)
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1; got {restarts!r}")
        self.restarts = restarts
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an integer or None; got {seed!r}")
        self.seed = seed

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        threat: Threat | None = None,
    ) -> torch.Tensor:
        """Adversarial images (N,C,H,W) for ``images`` with true ``labels``.

        Args:
            images: (N,C,H,W) floats in [0,1]; never modified.
            labels: (N,) true class indices.
            target: (N,) target classes for a targeted attack (default: untargeted).
            threat: the perturbation set (default: this attack's ``norm`` ball of ``eps``).
        """
        return self._execute(images, labels, target, threat, evaluate=False)[0]

    def run(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        threat: Threat | None = None,
    ) -> AttackResult:
        """Like calling the attack, but returns an :class:`AttackResult`."""
        _, result = self._execute(images, labels, target, threat, evaluate=True)
        return cast(AttackResult, result)

    def threat_for(self, images: torch.Tensor) -> Threat:
        """The set used when a call gives no ``threat`` (subclasses may derive it from images)."""
        return ball(self.norm, self.eps)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted classes (N,) of the model in eval mode (mode restored afterwards)."""
        x = check_images(images, "images")
        with eval_mode(self.model), torch.no_grad():
            return self.model(x).argmax(1)

    def config(self) -> dict[str, Any]:
        """Hyper-parameters, for logs and JSON summaries."""
        out: dict[str, Any] = {"attack": self.name or type(self).__name__}
        for key, value in vars(self).items():
            if key == "model" or key.startswith("_"):
                continue
            out[key] = (
                value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
            )
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "attack")
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ algorithm
    @abc.abstractmethod
    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        """Run the algorithm from ``delta`` (a member of the set) and return the final delta.

        The engine projects the returned perturbation onto the set again, so an algorithm
        cannot leave the set; it may modify ``delta`` in place.
        """

    # ------------------------------------------------------------------ engine
    def _execute(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        threat: Threat | None,
        *,
        evaluate: bool,
    ) -> tuple[torch.Tensor, AttackResult | None]:
        x = check_images(images, "images").detach()
        n = x.shape[0]
        y = check_labels(labels, n, name="labels").to(x.device)
        aim = y if target is None else check_labels(target, n, name="target").to(x.device)
        spec = self.threat_for(x) if threat is None else threat
        if not isinstance(spec, Threat):
            raise TypeError(f"threat must be a foveal.threats.Threat; got {type(spec).__name__}")
        bound = spec.bind_checked(x)  # x was checked above
        problem = Problem(
            self.model, x, aim, y, target is not None, bound, self.objective, spec=spec
        )
        keys = _image_keys(x) if self.random_start else []
        seed = self.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        need_eval = evaluate or self.restarts > 1

        def attempt(restart: int) -> torch.Tensor:
            if self.random_start and n:
                start = bound.sample(sample_generators(keys, seed, restart))
            else:
                start = torch.zeros_like(x)
            return bound.project_(self.perturb(problem, start))

        def score(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            if n == 0:
                empty = torch.zeros(0, device=x.device, dtype=torch.long)
                return empty.to(x.dtype), empty, empty.bool()
            loss, logits = problem.evaluate(delta)
            pred = logits.argmax(1)
            return loss, pred, problem.is_success(pred)

        with eval_mode(self.model):
            delta = attempt(0)
            if need_eval:
                loss, pred, success = score(delta)
            for restart in range(1, self.restarts):
                new_delta = attempt(restart)
                new_loss, new_pred, new_success = score(new_delta)
                better = (new_success & ~success) | ((new_success == success) & (new_loss > loss))
                delta = torch.where(better.view(-1, 1, 1, 1), new_delta, delta)
                loss = torch.where(better, new_loss, loss)
                pred = torch.where(better, new_pred, pred)
                success = success | new_success
        # x + delta lies in [0,1] up to rounding (delta is in the box); the clamp removes the
        # rounding only, it never changes a pixel by more than one ulp.
        adversarial = (x + delta).clamp_(0.0, 1.0)
        if not evaluate:
            return adversarial, None
        result = AttackResult(
            adversarial=adversarial,
            success=success,
            predictions=pred,
            loss=loss,
            norms=bound.norms(adversarial - x),
        )
        return adversarial, result
