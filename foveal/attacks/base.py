"""The attack engine: one place owns the guarantees, each attack only its idea.

Every attack is called the same way, ``attack(images, labels, *, target=None, threat=None,
masks=None)`` (``attack.run(...)`` likewise, returning an :class:`AttackResult`). :class:`Attack`
validates the inputs (range [0,1], NaN, shapes, labels against the model's number of classes,
budgets, per-batch ``masks``), puts the model in eval mode (restoring every module's mode
afterwards, also on errors), binds the perturbation set to the batch, draws the random start, runs
the algorithm, projects its result onto the set once more, keeps the per-sample best over restarts
and does the success bookkeeping. Subclasses implement :meth:`Attack.perturb`, which receives a
:class:`Problem` (gradients, evaluation, step sizes, the bound set, the per-batch
:class:`Context`) and a starting perturbation. No attack can therefore skip the mask, the budget
or the box.

Per-batch context. What a call carries besides images and labels (today: ``masks``) reaches the
attack as a frozen :class:`Context`. An attack that needs it implements its idea through three
hooks, which the engine calls once per call, in this order, with the checked images (the model
already in eval mode):

- :meth:`Attack.prepare` ``(images, context) -> Context``: derive what the batch needs (the dual
  attack's foreground: the given masks, or a masker on the fixation density);
- :meth:`Attack.threat_for` ``(images, context, threat) -> Threat``: the set of this call
  (default: ``threat`` if given, else the attack's own ``norm`` ball of radius ``eps``); an
  attack may adapt a given set but must return a subset of it (the superpixel attacks search
  the superpixel subspace inside it), and results report norms in the given set's regions;
- :meth:`Attack.objective_for` ``(images, context) -> Objective``: the objective of this call
  (default: the attack's ``objective``).

The context they return is ``problem.context`` inside :meth:`Attack.perturb` and
:meth:`~foveal.attacks.IterativeAttack.step_size`; nothing per call is stored on the attack
object, so one attack object serves any sequence of batches. An attack declares
whether it reads masks (the class attribute ``uses_masks``) and whether its configuration needs
them (the property ``requires_masks``); the engine refuses masks given to an attack that does not
read them (restrict such an attack through the set instead: ``threat=frozen(...)`` or
``threat=dual(...)``) and a call without masks to one that requires them.

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
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, cast

import torch
from torch import nn

from foveal._modes import eval_mode
from foveal._validation import check_eps, check_images, check_labels, check_mask
from foveal.attacks.objectives import Objective, ObjectiveContext, ObjectiveLike, as_objective
from foveal.registry import Registry
from foveal.threats import BoundThreat, Threat, ball, parse_norm

__all__ = [
    "ATTACKS",
    "DEFAULT_EPS",
    "Attack",
    "AttackResult",
    "Context",
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
        norms: ``{region: (N,)}`` size of the perturbation per region in the set's norm (the
            regions of the call's ``threat=`` when given, else of the attack's own set).
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


@dataclass(frozen=True)
class Context:
    """What one call carries besides images and labels, as the attack's hooks see it.

    The engine builds ``Context(masks=...)`` from the call's ``masks=`` (checked against the
    images, on their device and dtype); :meth:`Attack.prepare` may return a changed copy
    (``dataclasses.replace``), e.g. with masks derived from the images. An attack that needs more
    per-batch state subclasses it with further fields (tensors of first dimension N are sliced
    by :meth:`subset`).

    Attributes:
        masks: (N,1,H,W) or (N,C,H,W) masks in {0,1}, or None.

    Example:
        >>> ctx = Context(masks=torch.ones(4, 1, 8, 8))
        >>> tuple(ctx.subset(torch.tensor([0, 2])).masks.shape)
        (2, 1, 8, 8)
    """

    masks: torch.Tensor | None = None

    def subset(self, index: torch.Tensor | slice) -> Context:
        """The context of the samples ``index`` (every tensor field sliced along dim 0)."""
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                at = index.to(value.device) if isinstance(index, torch.Tensor) else index
                changes[f.name] = value[at]
        return replace(self, **changes)


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
        context: the per-batch :class:`Context` returned by :meth:`Attack.prepare`.
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
        context: Context | None = None,
    ) -> None:
        self.model = model
        self.images = images
        self.labels = labels
        self.true_labels = true_labels
        self.targeted = targeted
        self.threat = threat
        self.objective = objective
        self.spec = spec
        self.context = Context() if context is None else context
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
    attack's own set (:meth:`threat_for`; by default its ``norm`` ball of radius ``eps``), and
    per-batch masks (``masks=``) for the attacks that read them (``uses_masks``). An attack that
    needs per-batch context overrides the hooks :meth:`prepare`, :meth:`threat_for` and
    :meth:`objective_for` (see the module docstring), never ``__call__`` or :meth:`run`.

    Args:
        model: a classifier taking images in [0,1] (N,C,H,W) and returning logits (N,K).
        eps: radius of the default ball (default: 8/255 for Linf, 0.5 for L2).
        norm: ``"linf"`` or ``"l2"``, the default ball's norm.
        objective: ``"ce"``, ``"margin"``, an :class:`Objective` or ``fn(logits, labels)``.
        random_start: start from a random point of the set instead of zero (``None``: the
            class default ``default_random_start``).
        restarts: number of runs; each sample keeps its best run (successful first, then
            highest objective).
        seed: seed of the random starts (``None``: a fresh one each call).
    """

    #: Registry name (set by each registered subclass).
    name: ClassVar[str] = ""
    #: Whether the attack reads per-batch masks (``masks=``); the engine refuses masks given to
    #: an attack that does not.
    uses_masks: ClassVar[bool] = False
    #: ``random_start`` when the constructor gets ``None``.
    default_random_start: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        norm: str = "linf",
        objective: ObjectiveLike = "ce",
        random_start: bool | None = None,
        restarts: int = 1,
        seed: int | None = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.norm = parse_norm(norm)
        self.eps = check_eps(DEFAULT_EPS[self.norm] if eps is None else eps, "eps")
        self.objective = as_objective(objective)
        self.random_start = bool(
            self.default_random_start if random_start is None else random_start
        )
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
        masks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Adversarial images (N,C,H,W) for ``images`` with true ``labels``.

        Args:
            images: (N,C,H,W) floats in [0,1]; never modified.
            labels: (N,) true class indices.
            target: (N,) target classes for a targeted attack (default: untargeted).
            threat: the perturbation set (default: the attack's own, :meth:`threat_for`).
            masks: (N,1,H,W) or (N,C,H,W) {0,1} masks of the batch, for attacks that read
                them (``uses_masks``; e.g. the dual attack's ground-truth foregrounds).

        Raises:
            TypeError: ``masks`` given to an attack that does not read masks.
            ValueError: invalid inputs, or no ``masks`` where :attr:`requires_masks`.
        """
        return self._execute(images, labels, target, threat, masks, evaluate=False)[0]

    def run(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        threat: Threat | None = None,
        masks: torch.Tensor | None = None,
    ) -> AttackResult:
        """Like calling the attack, but returns an :class:`AttackResult`."""
        _, result = self._execute(images, labels, target, threat, masks, evaluate=True)
        return cast(AttackResult, result)

    @property
    def requires_masks(self) -> bool:
        """Whether a call must give ``masks=`` in this configuration (default: False)."""
        return False

    # ------------------------------------------------------------------ per-call hooks
    def prepare(self, images: torch.Tensor, context: Context) -> Context:
        """The per-batch context the other hooks and the algorithm see (default: ``context``).

        Called once per call, first, with the checked images (N,C,H,W) and the context built
        from the call (``context.masks``: the given masks or None). Return a new
        :class:`Context` (e.g. ``dataclasses.replace(context, masks=derived)``); never store
        per-call state on the attack.
        """
        return context

    def threat_for(self, images: torch.Tensor, context: Context, threat: Threat | None) -> Threat:
        """The perturbation set of this call, from the call's ``threat`` (None if not given).

        Default: ``threat`` if given, else the attack's ``norm`` ball of radius ``eps``.
        Attacks may derive the set from the images and the context (the dual attack's region
        budget on its foreground) or adapt a given set (the superpixel attacks' subspace); an
        adapted set must lie inside the given one.
        """
        return ball(self.norm, self.eps) if threat is None else threat

    def objective_for(self, images: torch.Tensor, context: Context) -> Objective:
        """The objective of this call (default: the attack's ``objective``)."""
        return self.objective

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
        masks: torch.Tensor | None,
        *,
        evaluate: bool,
    ) -> tuple[torch.Tensor, AttackResult | None]:
        x = check_images(images, "images").detach()
        n = x.shape[0]
        y = check_labels(labels, n, name="labels").to(x.device)
        aim = y if target is None else check_labels(target, n, name="target").to(x.device)
        if threat is not None and not isinstance(threat, Threat):
            raise TypeError(f"threat must be a foveal.threats.Threat; got {type(threat).__name__}")
        given = self._check_masks(x, masks)
        need_eval = evaluate or self.restarts > 1
        with eval_mode(self.model):
            problem = self._problem(x, aim, y, target is not None, threat, given)
            bound = problem.threat
            keys = _image_keys(x) if self.random_start else []
            seed = self.seed
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())

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
        # sizes per region of the set the call gave (an attack may search a subset of it)
        report = bound if threat is None or threat is problem.spec else threat.bind_checked(x)
        result = AttackResult(
            adversarial=adversarial,
            success=success,
            predictions=pred,
            loss=loss,
            norms=report.norms(adversarial - x),
        )
        return adversarial, result

    def _check_masks(self, images: torch.Tensor, masks: object) -> torch.Tensor | None:
        """The call's masks, checked against ``images`` and on their device and dtype."""
        label = f"{type(self).__name__} ({self.name!r})" if self.name else type(self).__name__
        if masks is None:
            if self.requires_masks:
                raise self._missing_masks()
            return None
        if not self.uses_masks:
            seen = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise TypeError(
                f"{label} does not read masks; got masks={seen}. Restrict it to regions through "
                "the perturbation set instead: threat=frozen(1 - masks, eps) moves only the "
                "masked pixels, threat=frozen(masks, eps) freezes them, threat=dual(masks, "
                "eps_fg, eps_bg) gives each region its own budget"
            )
        checked = check_mask(masks, images, "masks")
        return checked.detach().to(device=images.device, dtype=images.dtype)

    def _missing_masks(self) -> ValueError:
        """The error of a call without masks to an attack that requires them."""
        label = f"{type(self).__name__} ({self.name!r})" if self.name else type(self).__name__
        return ValueError(
            f"{label} requires masks in this configuration: pass masks= ((N,1,H,W) or "
            "(N,C,H,W) in {0,1}, one per image); got masks=None"
        )

    def _problem(
        self,
        x: torch.Tensor,
        aim: torch.Tensor,
        y: torch.Tensor,
        targeted: bool,
        threat: Threat | None,
        masks: torch.Tensor | None,
    ) -> Problem:
        """Run the hooks once for this call and bind the set: the :class:`Problem`."""
        name = type(self).__name__
        context = self.prepare(x, Context(masks=masks))
        if not isinstance(context, Context):
            raise TypeError(f"{name}.prepare must return a Context; got {type(context).__name__}")
        spec = self.threat_for(x, context, threat)
        if not isinstance(spec, Threat):
            raise TypeError(
                f"{name}.threat_for must return a foveal.threats.Threat; got {type(spec).__name__}"
            )
        objective = self.objective_for(x, context)
        if not isinstance(objective, Objective):
            raise TypeError(
                f"{name}.objective_for must return an Objective; got {type(objective).__name__}"
            )
        bound = spec.bind_checked(x)  # x was checked by the caller
        return Problem(
            self.model, x, aim, y, targeted, bound, objective, spec=spec, context=context
        )
