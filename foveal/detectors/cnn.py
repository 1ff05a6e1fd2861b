"""CNN detectors of the SMD/SPD paper: ID, JSD, SMD and SPD (sections 3.4-3.5).

Each trains the dataset's CNN from the SMD/SPD paper
(:class:`~foveal.detectors.networks.DetectorNet`, dropout 0.6, Adam with its standard settings, 10
epochs of batches of 50) to separate clean (label 0) from adversarial (label 1) images, on a
different input:

- ``id`` (image defense, Gong et al. 2017): the image itself;
- ``jsd`` (Jacobian saliency defense, Zhang et al. 2018, as adapted by the SMD/SPD paper): the image
  concatenated with the derivative of the predicted class's *logit* with respect to the image
  (the SMD/SPD paper uses the logits because the softmax derivative underflows);
- ``smd`` (saliency map defense): the learned real-time saliency map
  (:class:`~foveal.saliency.MaskingModel`, trained on clean images only) of the classifier's
  *predicted* class, so that no label leaks into the detector;
- ``spd`` (salient pixel defense): the salient pixels, map x image.

The score is the detector's log-odds ``z_adv - z_clean`` (default threshold 0, i.e. the
network's own decision; :meth:`~foveal.detectors.Detector.calibrate` sets a threshold for a
target false-positive rate instead).

Gradients for the adaptive attacks (:mod:`foveal.detectors.adaptive`):
:meth:`CNNDetector.input_gradient` gives the gradient of the log-odds with respect to the image
either through the whole pipeline (``"full"``: through the masking model for SMD and SPD; the
Jacobian channels of JSD are held constant, as their derivative is zero almost everywhere for a
ReLU classifier) or as the SMD/SPD paper's Algorithms 1-3 take it (``"input"``: the gradient with
respect to the detector's own input, broadcast over the colour channels for SMD and applied to the
image unchanged for SPD).

Checkpoints hold the detector network and, for SMD and SPD, the masking model it depends on; the
classifier is passed again at load time.

Written by hand: no library provides these detectors; the networks are plain ``torch.nn`` and
the saliency model is :mod:`foveal.saliency.learned`.
"""

from __future__ import annotations

import abc
import logging
import os
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from foveal._modes import eval_mode
from foveal._validation import check_images
from foveal.batching import map_batches
from foveal.detectors.base import DETECTORS, Detector
from foveal.detectors.networks import ARCHS, DetectorNet, auto_arch
from foveal.saliency.learned import MaskingModel, load_masking_model

__all__ = [
    "CNNDetector",
    "ImageDetector",
    "JacobianDetector",
    "SaliencyMapDetector",
    "SalientPixelDetector",
]

logger = logging.getLogger(__name__)

#: How :meth:`CNNDetector.input_gradient` differentiates (see the module docstring).
GRADIENT_MODES = ("full", "input")


def _device_of(module: nn.Module | None) -> torch.device:
    param = None if module is None else next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class CNNDetector(Detector):
    """Base of ID, JSD, SMD and SPD: a CNN of the SMD/SPD paper on a per-detector input.

    Args:
        model: the classifier (taking [0,1] images); its predicted class selects the saliency
            map (SMD, SPD) or the logit (JSD). Optional for ID.
        arch: ``"auto"`` (per dataset, see :func:`~foveal.detectors.networks.auto_arch`),
            ``"mnist"``, ``"cifar"`` or ``"assira"``.
        width: filter multiplier of the network (1.0 = the SMD/SPD paper).
        dropout: dropout before every dense layer (0.6 = the SMD/SPD paper).
        epochs, batch_size, lr: Adam training (the SMD/SPD paper: 10 epochs, batches of 50,
            lr 1e-3).
        seed: seeds the initial weights, dropout and shuffling.
        device: where to train and score (default: the classifier's device, else CPU).
        progress: show a tqdm bar while training.
    """

    needs_model: ClassVar[bool] = True
    #: Short description of the network's input (for reports).
    input_kind: ClassVar[str] = ""

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        arch: str = "auto",
        width: float = 1.0,
        dropout: float = 0.6,
        epochs: int = 10,
        batch_size: int = 50,
        lr: float = 1e-3,
        seed: int = 0,
        device: str | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if self.needs_model and model is None:
            raise ValueError(f"{type(self).__name__} needs the classifier (model=...)")
        if arch != "auto" and arch not in ARCHS:
            raise ValueError(f"arch must be 'auto' or one of {ARCHS}; got {arch!r}")
        for key, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1; got {value!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr!r}")
        self.model = model
        self.arch = arch
        self.width = float(width)
        self.dropout = float(dropout)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = float(lr)
        self.seed = int(seed)
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.progress = bool(progress)
        self.net: DetectorNet | None = None
        self.history: list[dict[str, float]] = []
        self._warm = False

    # ------------------------------------------------------------------ inputs
    def predicted(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's predicted classes (N,)."""
        if self.model is None:
            raise ValueError(f"{type(self).__name__} needs the classifier to predict classes")
        with eval_mode(self.model), torch.no_grad():
            return self.model(images).argmax(1)

    def features(self, images: torch.Tensor, *, differentiable: bool = False) -> torch.Tensor:
        """The detector network's input for ``images`` (N,C,H,W) in [0,1].

        With ``differentiable=True`` the result keeps the graph from ``images`` (through the
        masking model for SMD and SPD).
        """
        x = check_images(images)
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            out = self._features(x, differentiable)
        return out if differentiable else out.detach()

    @abc.abstractmethod
    def _features(self, images: torch.Tensor, differentiable: bool) -> torch.Tensor:
        """The network input for validated ``images`` (graph kept when ``differentiable``)."""

    def _feature_batches(self, images: torch.Tensor) -> torch.Tensor:
        return map_batches(
            lambda b: self.features(b["image"]), {"image": images}, batch_size=256,
            device=self.device,
        )  # fmt: skip

    # ------------------------------------------------------------------ scores
    def log_odds_of_features(self, feats: torch.Tensor) -> torch.Tensor:
        """``z_adv - z_clean`` (N,) of the network on precomputed inputs (eval mode)."""
        self._require_fitted()
        assert self.net is not None
        with eval_mode(self.net):
            z = self.net(feats)
        return z[:, 1] - z[:, 0]

    def log_odds(self, images: torch.Tensor, *, differentiable: bool = False) -> torch.Tensor:
        """Log-odds of "adversarial" (N,); differentiable w.r.t. ``images`` when asked."""
        feats = self.features(images.to(self.device), differentiable=differentiable)
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            return self.log_odds_of_features(feats)

    def _score(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.log_odds(images)

    def input_gradient(self, images: torch.Tensor, *, mode: str = "full") -> torch.Tensor:
        """Gradient of the summed log-odds with respect to ``images`` (N,C,H,W).

        Args:
            images: (N,C,H,W) in [0,1].
            mode: ``"full"`` (through the whole input pipeline) or ``"input"`` (the SMD/SPD paper,
                Algorithms 1-3: the gradient w.r.t. the detector's own input, mapped onto the
                image channels). See the module docstring.
        """
        if mode not in GRADIENT_MODES:
            raise ValueError(f"mode must be one of {GRADIENT_MODES}; got {mode!r}")
        x = check_images(images).to(self.device)
        with torch.enable_grad():
            if mode == "full":
                xg = x.detach().requires_grad_(True)
                lo = self.log_odds(xg, differentiable=True)
                (grad,) = torch.autograd.grad(lo.sum(), xg, allow_unused=True)
                return torch.zeros_like(x) if grad is None else grad
            feats = self.features(x).requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_odds_of_features(feats).sum(), feats)
        return self._input_to_image(grad, x)

    def _input_to_image(self, grad: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Map a gradient w.r.t. the network input onto the image (Algorithms 1-3)."""
        c = images.shape[1]
        if grad.shape[1] == c:
            return grad
        if grad.shape[1] == 1:
            return grad.expand(-1, c, -1, -1).contiguous()
        return grad[:, :c].contiguous()

    # ------------------------------------------------------------------ training
    def fit(
        self, clean: object, adversarial: object | None = None, *, warm_start: bool = False
    ) -> CNNDetector:
        """Train on clean (label 0) and adversarial (label 1) images.

        Args:
            clean, adversarial: tensors (N,C,H,W) in [0,1], datasets or batches.
            warm_start: continue training the current network (and keep its input
                standardisation) instead of starting from new weights; used by detector
                adversarial training.
        """
        self._warm = bool(warm_start)
        return super().fit(clean, adversarial)

    def _fit(self, clean: torch.Tensor, adversarial: torch.Tensor | None) -> None:
        from tqdm.auto import tqdm

        assert adversarial is not None
        warm = self._warm and self.net is not None
        feats = torch.cat([self._feature_batches(clean), self._feature_batches(adversarial)])
        labels = torch.cat(
            [torch.zeros(clean.shape[0], dtype=torch.long),
             torch.ones(adversarial.shape[0], dtype=torch.long)]
        ).to(self.device)  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + (len(self.history) if warm else 0))
            if not warm:
                c, h, w = clean.shape[1:]
                arch = auto_arch(int(c), int(min(h, w))) if self.arch == "auto" else self.arch
                self.net = DetectorNet(
                    arch=arch,
                    in_channels=int(feats.shape[1]),
                    input_size=(int(feats.shape[2]), int(feats.shape[3])),
                    width=self.width,
                    dropout=self.dropout,
                ).to(self.device)
                self.net.set_standardization(feats)
                self.history = []
            assert self.net is not None
            net = self.net
            opt = torch.optim.Adam(net.parameters(), lr=self.lr)
            gen = torch.Generator().manual_seed(self.seed + len(self.history))
            n = feats.shape[0]
            steps = self.epochs * ((n + self.batch_size - 1) // self.batch_size)
            bar = tqdm(total=steps, disable=not self.progress, desc=f"fit-{self.name}", unit="step")
            net.train()
            try:
                for _ in range(self.epochs):
                    perm = torch.randperm(n, generator=gen).to(self.device)
                    total, correct = 0.0, 0
                    for i in range(0, n, self.batch_size):
                        idx = perm[i : i + self.batch_size]
                        logits = net(feats[idx])
                        loss = F.cross_entropy(logits, labels[idx])
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        total += float(loss.detach()) * idx.numel()
                        correct += int((logits.argmax(1) == labels[idx]).sum())
                        bar.update(1)
                    self.history.append({"loss": total / n, "train_accuracy": correct / n})
                    logger.info("fit-%s epoch %d: %s", self.name, len(self.history),
                                self.history[-1])  # fmt: skip
            finally:
                net.eval()
                bar.close()

    # ------------------------------------------------------------------ checkpoints
    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arch": self.arch,
            "width": self.width,
            "dropout": self.dropout,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
        }
        if self.net is not None:
            out["network"] = dict(self.net.config)
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any], model: nn.Module | None) -> CNNDetector:
        config = dict(config)
        network = config.pop("network", None)
        det = cls._construct(config, model)
        if network is not None:
            if not isinstance(network, dict):
                raise ValueError(f"'network' must be a mapping; got {network!r}")
            det.net = DetectorNet(**network).to(det.device).eval()
        return det

    @classmethod
    def _construct(cls, config: dict[str, Any], model: nn.Module | None) -> CNNDetector:
        return cls(model, **config)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self._require_fitted()
        assert self.net is not None
        return {f"net.{k}": v for k, v in self.net.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.net is None:
            raise ValueError("the checkpoint's config has no 'network' description")
        _load_prefixed(self.net, tensors, "net.", "detector weights do not fit the network")
        self.net.to(self.device).eval()


def _load_prefixed(
    module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, error: str
) -> None:
    """Load the ``prefix``-ed entries of a checkpoint into ``module`` (ValueError on mismatch)."""
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{error}: {exc}") from None


@DETECTORS.register("id", help="ID: the SMD/SPD paper CNN on the image (baseline)")
class ImageDetector(CNNDetector):
    """ID: the SMD/SPD paper's CNN on the image itself (Gong et al. 2017; that paper's baseline).

    Shape:
        images (N,C,H,W) in [0,1] -> scores (N,) (log-odds of "adversarial").

    Example:
        >>> x = torch.rand(40, 1, 28, 28)
        >>> x_adv = (x + 0.2 * torch.randn_like(x).sign()).clamp(0, 1)
        >>> det = ImageDetector(width=0.25, epochs=2).fit(x, x_adv)
        >>> det.score(x).shape
        torch.Size([40])
    """

    name = "id"
    needs_model = False
    input_kind = "image"

    def _features(self, images: torch.Tensor, differentiable: bool) -> torch.Tensor:
        return images


@DETECTORS.register("jsd", help="JSD: image + logit Jacobian (baseline)")
class JacobianDetector(CNNDetector):
    """JSD: the image concatenated with ``d z_pred / d x`` (2C channels).

    The derivative is that of the predicted class's logit (the SMD/SPD paper, section 3.5), computed
    per image by autograd in eval mode.
    """

    name = "jsd"
    input_kind = "image + logit Jacobian"

    def _features(self, images: torch.Tensor, differentiable: bool) -> torch.Tensor:
        assert self.model is not None
        pred = self.predicted(images)
        with eval_mode(self.model), torch.enable_grad():
            xg = images.detach().requires_grad_(True)
            z = self.model(xg).gather(1, pred[:, None]).sum()
            (jac,) = torch.autograd.grad(z, xg)
        return torch.cat([images, jac.detach()], dim=1)


class _SaliencyDetector(CNNDetector):
    """SMD / SPD: need a masking model (trained on clean images only)."""

    needs_masker = True

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        masker: MaskingModel | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if isinstance(masker, (str, os.PathLike)):
            masker, _ = load_masking_model(masker)
        if not isinstance(masker, MaskingModel):
            raise TypeError(
                f"{type(self).__name__} needs masker=MaskingModel or the path of a saved one "
                f"(train one with foveal.saliency.train_masking_model); got "
                f"{type(masker).__name__}"
            )
        self.masker = masker.to(self.device).eval()
        for p in self.masker.parameters():
            p.requires_grad_(False)

    def saliency(self, images: torch.Tensor, *, differentiable: bool = False) -> torch.Tensor:
        """Learned saliency maps (N,1,H,W) of the predicted class."""
        pred = self.predicted(images.detach())
        grad = differentiable and torch.is_grad_enabled()
        with eval_mode(self.masker), torch.set_grad_enabled(grad):
            return self.masker(images, pred)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "masker_config": dict(self.masker.config)}

    @classmethod
    def _construct(cls, config: dict[str, Any], model: nn.Module | None) -> CNNDetector:
        config = dict(config)
        mcfg = config.pop("masker_config", None)
        if not isinstance(mcfg, dict):
            raise ValueError(f"'masker_config' must be a mapping; got {mcfg!r}")
        return cls(model, masker=MaskingModel(**mcfg), **config)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = super().state_tensors()
        out.update({f"masker.{k}": v for k, v in self.masker.state_dict().items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        super().load_state_tensors(tensors)
        _load_prefixed(
            self.masker, tensors, "masker.", "masking-model weights do not fit its config"
        )
        self.masker.to(self.device).eval()


@DETECTORS.register("smd", help="SMD: learned saliency map of the predicted class")
class SaliencyMapDetector(_SaliencyDetector):
    """SMD: the learned saliency map of the predicted class (1 channel).

    Args:
        model: the classifier.
        masker: a trained :class:`~foveal.saliency.MaskingModel` (or its directory).
        **kwargs: see :class:`CNNDetector`.

    Example:
        >>> import foveal
        >>> clf = foveal.models.create("shapes-cnn", width=4)
        >>> det = SaliencyMapDetector(clf, masker=MaskingModel(num_classes=10, width=4))
        >>> det.features(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    name = "smd"
    input_kind = "saliency map"

    def _features(self, images: torch.Tensor, differentiable: bool) -> torch.Tensor:
        return self.saliency(images, differentiable=differentiable)


@DETECTORS.register("spd", help="SPD: salient pixels, learned map x image")
class SalientPixelDetector(_SaliencyDetector):
    """SPD: the salient pixels ``map * image`` (C channels), the SMD/SPD paper's proposal.

    Args:
        model: the classifier.
        masker: a trained :class:`~foveal.saliency.MaskingModel` (or its directory).
        **kwargs: see :class:`CNNDetector`.

    Example:
        >>> import foveal
        >>> clf = foveal.models.create("shapes-cnn", width=4)
        >>> det = SalientPixelDetector(clf, masker=MaskingModel(num_classes=10, width=4))
        >>> x = torch.rand(2, 3, 32, 32)
        >>> bool((det.features(x) <= x + 1e-6).all())
        True
    """

    name = "spd"
    input_kind = "salient pixels"

    def _features(self, images: torch.Tensor, differentiable: bool) -> torch.Tensor:
        return self.saliency(images, differentiable=differentiable) * images
