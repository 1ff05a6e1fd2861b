"""Optional adapters: torchattacks and ART attacks behind foveal's validation and result type.

foveal's own attacks cover the strong attacks natively; these adapters exist for attacks foveal
does not implement (e.g. FAB) and for cross-checks. They are never core dependencies:

- torchattacks (``pip install foveal[torchattacks]``) pins ``requests~=2.25.1``, which would
  downgrade ``requests`` in most environments; install it with ``pip install --no-deps
  torchattacks`` if that matters. It clamps inputs silently and draws randomness from torch's
  global generator (so its results are neither batch-independent nor seeded per call unless
  ``seed`` is given, which seeds torch's global generator before each call).
- ART (``pip install foveal[art]``) converts every batch to numpy and back (about 1.4-1.6x slower
  than a torch-native attack here) and keeps its own copy of the model wrapper.

The adapted attack runs inside foveal's engine: inputs are validated, the model is in eval mode,
and the result is projected onto the perturbation set (a ball of ``eps`` by default; ``threat=``
works too, the external attack simply does not know about it, so a projection may undo part of
its work), with foveal's success bookkeeping. Both libraries are imported lazily; a missing one
raises ``ImportError`` naming the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from foveal.attacks.base import Attack, Problem

__all__ = ["ARTAttack", "TorchattacksAttack"]


def _require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this adapter needs the optional package {module!r}: pip install foveal[{extra}]"
            + (" (or pip install --no-deps torchattacks)" if extra == "torchattacks" else "")
        ) from exc


class TorchattacksAttack(Attack):
    """A torchattacks attack class run by foveal's engine.

    Args:
        model: classifier on [0,1] images returning logits.
        attack: torchattacks class name, e.g. ``"FAB"``, ``"CW"``, ``"OnePixel"``.
        eps: budget of the default ball (also passed to the attack if it takes ``eps``).
        norm: ``"linf"`` or ``"l2"`` (passed as ``norm="Linf"/"L2"`` if the attack takes it).
        params: further keyword arguments of the torchattacks class.
        seed: seeds torch's global generator before each call (None: leave it alone).

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        >>> x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> attack = TorchattacksAttack(model, attack="FGSM", eps=4 / 255)  # doctest: +SKIP
        >>> attack(x, y).shape  # doctest: +SKIP
        torch.Size([2, 3, 8, 8])
    """

    name = "torchattacks"

    def __init__(
        self,
        model: nn.Module,
        *,
        attack: str,
        eps: float | None = None,
        norm: str = "linf",
        params: Mapping[str, Any] | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, seed=seed)
        library = _require("torchattacks", "torchattacks")
        if not isinstance(attack, str) or not hasattr(library, attack):
            raise ValueError(f"attack must name a torchattacks attack class; got {attack!r}")
        self.attack = attack
        self.params = dict(params or {})
        cls = getattr(library, attack)
        import inspect

        accepted = inspect.signature(cls).parameters
        kwargs = dict(self.params)
        if "eps" in accepted:
            kwargs.setdefault("eps", self.eps)
        if "norm" in accepted:
            kwargs.setdefault("norm", "Linf" if self.norm == "linf" else "L2")
        self._impl = cls(model, **kwargs)

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        if self.seed is not None:
            torch.manual_seed(self.seed)
        impl = self._impl
        if problem.targeted:
            impl.set_mode_targeted_by_label(quiet=True)
        else:
            impl.set_mode_default()
        adv = impl(problem.images, problem.labels)
        return adv.to(problem.images.dtype) - problem.images


class ARTAttack(Attack):
    """An ART evasion attack run by foveal's engine (numpy round-trip; see the module).

    Args:
        model: classifier on [0,1] images returning logits.
        attack: ART class name in ``art.attacks.evasion``, e.g. ``"CarliniL2Method"``.
        num_classes: number of classes (ART's classifier wrapper needs it).
        eps: budget of the default ball (also passed as ``eps`` if the attack takes it).
        norm: ``"linf"`` or ``"l2"``.
        params: further keyword arguments of the ART class.
        seed: accepted for a uniform interface (ART seeds through numpy).

    Shape:
        images (N,C,H,W) in [0,1], labels (N,) -> adversarial images (N,C,H,W).
    """

    name = "art"

    def __init__(
        self,
        model: nn.Module,
        *,
        attack: str,
        num_classes: int,
        eps: float | None = None,
        norm: str = "linf",
        params: Mapping[str, Any] | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, seed=seed)
        evasion = _require("art.attacks.evasion", "art")
        if not isinstance(attack, str) or not hasattr(evasion, attack):
            raise ValueError(f"attack must name an art.attacks.evasion class; got {attack!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}")
        self.attack = attack
        self.num_classes = num_classes
        self.params = dict(params or {})
        self._cls = getattr(evasion, attack)
        self._impl: Any = None

    def _build(self, images: torch.Tensor) -> Any:
        import inspect

        estimators = _require("art.estimators.classification", "art")
        clf = estimators.PyTorchClassifier(
            model=self.model,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(images.shape[1:]),
            nb_classes=self.num_classes,
            clip_values=(0.0, 1.0),
            device_type="gpu" if images.is_cuda else "cpu",
        )
        accepted = inspect.signature(self._cls).parameters
        kwargs = dict(self.params)
        if "eps" in accepted:
            kwargs.setdefault("eps", self.eps)
        if "norm" in accepted:
            kwargs.setdefault("norm", float("inf") if self.norm == "linf" else 2)
        if "verbose" in accepted:
            kwargs.setdefault("verbose", False)
        return self._cls(clf, **kwargs)

    def perturb(self, problem: Problem, delta: torch.Tensor) -> torch.Tensor:
        if self._impl is None:
            self._impl = self._build(problem.images)
        if hasattr(self._impl, "targeted"):
            self._impl.targeted = problem.targeted
        x = problem.images.detach().cpu().float().numpy()
        y = problem.labels.detach().cpu().numpy()
        adv = self._impl.generate(x=x, y=y)
        out = torch.as_tensor(adv, device=problem.images.device, dtype=problem.images.dtype)
        return out - problem.images
