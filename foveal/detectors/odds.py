"""The odds-are-odd statistical test (Roth, Kilcher & Hofmann, ICML 2019).

For an image with predicted class ``y`` and any other class ``z``, the logit difference
``f_{y,z}(x) = z_z(x) - z_y(x)`` (the paper's ``<w_z - w_y, phi(x)>``: the biases cancel in
what follows, so only the logits are needed) changes under small random noise ``eta`` by

``g_{y,z}(x, eta) = f_{y,z}(clip(x + eta)) - f_{y,z}(x)``.

Clean images sit in regions where noise does not systematically raise the other classes;
adversarial images sit just past a decision boundary, and noise tends to move them back, so
``g`` toward the true class is unusually large.

- **Statistics** (:meth:`OddsAreOdd.fit`): on clean, correctly classified images, for every
  noise setting, per predicted class ``y`` and other class ``z``: the mean of ``g`` over the noise
  samples of each image, then its mean ``mu_{y,z}`` and standard deviation ``sigma_{y,z}`` across
  the images of class ``y``.
- **Score**: ``zbar_{y,z}(x) = (mean_eta g_{y,z}(x, eta) - mu_{y,z}) / sigma_{y,z}`` per noise
  setting, averaged over the settings, maximised over ``z``; an image is flagged above the
  threshold (default ``Phi^-1(0.999) ~ 3.09``, the authors' example;
  :meth:`~foveal.detectors.Detector.calibrate` sets it for a target false-positive rate).
- **Noise**: Gaussian (``n``), uniform on [-1, 1] (``u``) and Rademacher (``s``), each times a
  magnitude, added in pixel space before the model's normalisation. Default: the authors'
  detection settings ``n, s, u`` x ``0.003, 0.005, 0.008``, 256 samples each. All samples of a
  batch go through the model in large batches (``noise_batch`` images per forward pass).
- **Correction** (optional, :meth:`OddsAreOdd.fit_correction`): per predicted class, a logistic
  regression (scikit-learn; its coefficients stored as arrays) on the mean noise-induced
  logit-difference changes under larger noise (``n, s, u`` x ``0.01, 0.02, 0.03``), trained to
  recover the source class of adversarial examples; :meth:`OddsAreOdd.correct` applies it to
  the flagged images.

Written by hand: the authors' code is a research repository (TensorFlow and an older PyTorch
example); the test itself is a few tensor reductions. scikit-learn fits the correction.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from foveal._modes import eval_mode
from foveal._validation import check_images, check_labels
from foveal.detectors.base import DETECTORS, Detector, collect_images

__all__ = ["CORRECTION_NOISE", "DETECTION_NOISE", "OddsAreOdd", "parse_noise"]

logger = logging.getLogger(__name__)

NOISE_KINDS = {"n": "gaussian", "u": "uniform", "s": "rademacher"}

#: The authors' detection noise settings (kind letter + magnitude).
DETECTION_NOISE = ("n0.003", "s0.003", "u0.003", "n0.005", "s0.005", "u0.005",
                   "n0.008", "s0.008", "u0.008")  # fmt: skip
#: The authors' larger noise for the correction.
CORRECTION_NOISE = ("n0.01", "s0.01", "u0.01", "n0.02", "s0.02", "u0.02",
                    "n0.03", "s0.03", "u0.03")  # fmt: skip


def parse_noise(settings: Sequence[str]) -> list[tuple[str, float]]:
    """``["n0.003", "u0.01"]`` -> ``[("n", 0.003), ("u", 0.01)]`` (n: Gaussian, u: uniform,
    s: Rademacher signs).

    Example:
        >>> parse_noise(["n0.003", "s0.01"])
        [('n', 0.003), ('s', 0.01)]
    """
    if isinstance(settings, str) or not settings:
        raise ValueError(
            f"noise must be a non-empty list like ['n0.003', 'u0.005']; got {settings!r}"
        )
    out = []
    for item in settings:
        kind, rest = str(item)[:1], str(item)[1:]
        try:
            magnitude = float(rest)
        except ValueError:
            magnitude = -1.0
        if kind not in NOISE_KINDS or not (magnitude > 0 and math.isfinite(magnitude)):
            raise ValueError(
                f"noise setting {item!r} must be a kind letter (n: Gaussian, u: uniform, "
                f"s: Rademacher) followed by a magnitude > 0, e.g. 'n0.003'"
            )
        out.append((kind, magnitude))
    return out


def _draw(kind: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Unit noise of one kind (n: N(0,1), u: U[-1,1], s: random signs)."""
    if kind == "n":
        return torch.randn(shape, generator=gen)
    if kind == "u":
        return torch.rand(shape, generator=gen) * 2 - 1
    return torch.randint(0, 2, shape, generator=gen).float() * 2 - 1


@DETECTORS.register("odds", help="odds-are-odd: noise-induced logit-difference z-scores")
class OddsAreOdd(Detector):
    """The odds-are-odd test (see the module docstring).

    Args:
        model: the classifier (taking [0,1] pixels, returning logits).
        noise: noise settings (kind letter + magnitude; default the authors' nine).
        samples: noise samples per image and setting (default 256, the authors').
        noise_batch: images (noisy copies) per forward pass (default 2048).
        min_class_count: classes with fewer clean training images get no statistics
            (their z-scores are 0 and a warning is logged).
        seed: seeds the noise (each call draws the same noise for the same batch position).
        default threshold: ``Phi^-1(0.999)``.

    Shape:
        images (N,C,H,W) in [0,1] -> scores (N,) (max over other classes of the mean z-score).

    Example:
        >>> import foveal
        >>> clf = foveal.models.create("shapes-cnn", width=4).eval()
        >>> det = OddsAreOdd(clf, noise=["n0.01"], samples=8).fit(torch.rand(20, 3, 32, 32))
        >>> det.score(torch.rand(3, 3, 32, 32)).shape
        torch.Size([3])
    """

    name = "odds"
    needs_adversarial = False
    needs_model = True
    takes_labels = True
    default_threshold = 3.090232306167813  # Phi^-1(0.999)

    def __init__(
        self,
        model: nn.Module,
        *,
        noise: Sequence[str] = DETECTION_NOISE,
        samples: int = 256,
        noise_batch: int = 2048,
        min_class_count: int = 2,
        correction_noise: Sequence[str] = CORRECTION_NOISE,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        for key, value in (("samples", samples), ("noise_batch", noise_batch),
                           ("min_class_count", min_class_count)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1; got {value!r}")
        self.model = model
        self.noise = [f"{k}{m:g}" for k, m in parse_noise(list(noise))]
        self.correction_noise = [f"{k}{m:g}" for k, m in parse_noise(list(correction_noise))]
        self.samples = samples
        self.noise_batch = noise_batch
        self.min_class_count = min_class_count
        self.seed = int(seed)
        self.mu = torch.zeros(0)
        self.sigma = torch.zeros(0)
        self.counts = torch.zeros(0, dtype=torch.long)
        self.correction_coef = torch.zeros(0)
        self.correction_intercept = torch.zeros(0)
        self.correction_fitted = torch.zeros(0, dtype=torch.bool)

    # ------------------------------------------------------------------ statistics
    def _device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Classifier logits (N,K) in eval mode."""
        with eval_mode(self.model):
            return self.model(images.to(self._device())).float()

    @torch.no_grad()
    def mean_changes(
        self, images: torch.Tensor, settings: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean noise-induced logit changes and the clean logits.

        The same ``samples`` noise draws (per setting, from ``seed``) are used for every image,
        so an image's result does not depend on the batch it comes in.

        Returns:
            ``(delta, logits)``: ``delta`` (N, S, K) is ``mean_eta [z(x + eta) - z(x)]`` per
            noise setting ``S``; ``logits`` (N, K). ``g_{y,z} = delta_z - delta_y``.
        """
        x = check_images(images).to(self._device())
        parsed = parse_noise(list(settings or self.noise))
        n = x.shape[0]
        clean = self.logits(x)
        out = torch.zeros(n, len(parsed), clean.shape[1], device=x.device)
        per_chunk = max(1, self.noise_batch // self.samples)
        with eval_mode(self.model):
            for s, (kind, magnitude) in enumerate(parsed):
                gen = torch.Generator().manual_seed(self.seed * 1000 + s)
                eta = magnitude * _draw(kind, (self.samples, *x.shape[1:]), gen).to(x)
                for i in range(0, n, per_chunk):
                    xb = x[i : i + per_chunk]
                    b = xb.shape[0]
                    noisy = (xb[:, None] + eta[None]).clamp_(0, 1).flatten(0, 1)
                    z = self.model(noisy).float().view(b, self.samples, -1)
                    out[i : i + b, s] = z.mean(dim=1) - clean[i : i + b]
        return out, clean

    @staticmethod
    def pair_changes(delta: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """``g_{y,z}`` (N, S, K) from :meth:`mean_changes`; the entry ``z = y`` is 0."""
        own = delta.gather(2, predicted.view(-1, 1, 1).expand(-1, delta.shape[1], 1))
        return delta - own

    def _fit(self, clean: torch.Tensor, adversarial: torch.Tensor | None) -> None:
        self.fit_statistics(clean)

    def fit(
        self,
        clean: object,
        adversarial: object | None = None,
        *,
        labels: torch.Tensor | None = None,
    ) -> OddsAreOdd:
        """Statistics from clean images (``adversarial`` is ignored; see :meth:`fit_correction`).

        Args:
            clean: clean training images (tensor, dataset or batches).
            labels: their true labels; when given, only correctly classified images count
                (as in the paper). A dataset's ``.labels`` are used automatically.
        """
        if labels is None and isinstance(getattr(clean, "labels", None), torch.Tensor):
            labels = clean.labels  # type: ignore[attr-defined]
        self.fit_statistics(collect_images(clean, "clean"), labels)
        self.fitted = True
        return self

    def fit_statistics(self, clean: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Per-class means and standard deviations of ``g`` on clean images (see the module
        docstring); with ``labels``, only correctly classified images count."""
        delta, logits = self.mean_changes(clean)
        pred = logits.argmax(1)
        keep = torch.ones_like(pred, dtype=torch.bool)
        if labels is not None:
            labels = check_labels(labels, clean.shape[0], logits.shape[1]).to(pred.device)
            keep = pred == labels
        g = self.pair_changes(delta, pred)[keep]
        pred = pred[keep]
        k = logits.shape[1]
        s = delta.shape[1]
        mu = torch.zeros(k, s, k)
        sigma = torch.ones(k, s, k)
        counts = torch.zeros(k, dtype=torch.long)
        missing = []
        for y in range(k):
            gy = g[pred == y].cpu()
            counts[y] = gy.shape[0]
            if gy.shape[0] < self.min_class_count:
                missing.append(y)
                continue
            mu[y] = gy.mean(0)
            sd = gy.std(0)
            sigma[y] = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
        if missing:
            logger.warning(
                "odds-are-odd: classes %s have fewer than %d clean training images; their "
                "z-scores are set to 0",
                missing,
                self.min_class_count,
            )
        self.mu, self.sigma, self.counts = mu, sigma, counts

    # ------------------------------------------------------------------ scores
    @torch.no_grad()
    def zscores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-setting z-scores (N, S, K) (NaN at ``z = y``) and the predicted classes (N,)."""
        self._require_fitted()
        delta, logits = self.mean_changes(images)
        pred = logits.argmax(1)
        if self.mu.shape[0] != logits.shape[1]:
            raise ValueError(
                f"the statistics cover {self.mu.shape[0]} classes; the model has {logits.shape[1]}"
            )
        g = self.pair_changes(delta, pred).cpu()
        p = pred.cpu()
        z = (g - self.mu[p]) / self.sigma[p]
        z[self.counts[p] < self.min_class_count] = 0.0
        z.scatter_(2, p.view(-1, 1, 1).expand(-1, z.shape[1], 1), math.nan)
        return z, p

    def _score(self, images: torch.Tensor) -> torch.Tensor:
        z, _ = self.zscores(images)
        mean = z.mean(dim=1)  # over noise settings
        return torch.nan_to_num(mean, nan=-math.inf).amax(dim=1)

    # ------------------------------------------------------------------ correction
    def fit_correction(
        self, adversarial: object, labels: torch.Tensor, *, c: float = 1.0
    ) -> OddsAreOdd:
        """Per predicted class, learn to recover the source class of adversarial images.

        Args:
            adversarial: adversarial images (their predicted class is the attacked one).
            labels: their true (source) classes.
            c: inverse regularisation of scikit-learn's ``LogisticRegression``.
        """
        from sklearn.linear_model import LogisticRegression

        self._require_fitted()
        x = collect_images(adversarial, "adversarial")
        labels = check_labels(labels, x.shape[0], name="labels").cpu()
        feats, pred = self._correction_features(x)
        k = self.mu.shape[0]
        coef = torch.zeros(k, k, feats.shape[1], dtype=torch.float64)
        intercept = torch.full((k, k), -math.inf, dtype=torch.float64)
        fitted = torch.zeros(k, dtype=torch.bool)
        for y in range(k):
            sel = (pred == y).numpy()
            classes = np.unique(labels.numpy()[sel])
            if sel.sum() < 2 or len(classes) < 2:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lr = LogisticRegression(C=c, max_iter=1000).fit(
                    feats[sel].numpy(), labels.numpy()[sel]
                )
            cls = torch.from_numpy(lr.classes_.astype(np.int64))
            w = torch.from_numpy(lr.coef_.astype(np.float64))
            b = torch.from_numpy(lr.intercept_.astype(np.float64))
            if len(cls) == 2:  # binary: one row for classes_[1]
                w = torch.cat([torch.zeros_like(w), w])
                b = torch.cat([torch.zeros_like(b), b])
            coef[y, cls] = w
            intercept[y, cls] = b
            fitted[y] = True
        self.correction_coef, self.correction_intercept = coef, intercept
        self.correction_fitted = fitted
        return self

    def _correction_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta, logits = self.mean_changes(images, self.correction_noise)
        pred = logits.argmax(1)
        g = self.pair_changes(delta, pred)
        return g.flatten(1).double().cpu(), pred.cpu()

    def correct(self, images: object) -> torch.Tensor:
        """Predicted classes (N,), replaced by the corrected class where the test flags the
        image and a correction was fitted for its predicted class."""
        x = collect_images(images)
        flagged = self.detect(x)
        feats, pred = self._correction_features(x)
        out = pred.clone()
        if self.correction_coef.numel() == 0:
            return out
        for i in torch.nonzero(flagged & self.correction_fitted[pred]).flatten().tolist():
            y = int(pred[i])
            scores = self.correction_coef[y] @ feats[i] + self.correction_intercept[y]
            out[i] = int(scores.argmax())
        return out

    # ------------------------------------------------------------------ checkpoints
    def config(self) -> dict[str, Any]:
        return {
            "noise": list(self.noise),
            "samples": self.samples,
            "noise_batch": self.noise_batch,
            "min_class_count": self.min_class_count,
            "correction_noise": list(self.correction_noise),
            "seed": self.seed,
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {"mu": self.mu, "sigma": self.sigma, "counts": self.counts}
        if self.correction_coef.numel():
            out.update(
                correction_coef=self.correction_coef,
                correction_intercept=self.correction_intercept,
                correction_fitted=self.correction_fitted,
            )
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for key in ("mu", "sigma", "counts"):
            if key not in tensors:
                raise ValueError(f"odds-are-odd state lacks {key!r}")
        mu, sigma = tensors["mu"].cpu().float(), tensors["sigma"].cpu().float()
        if mu.ndim != 3 or mu.shape != sigma.shape or mu.shape[1] != len(self.noise):
            raise ValueError(
                f"odds-are-odd statistics of shape {tuple(mu.shape)} do not fit "
                f"{len(self.noise)} noise settings"
            )
        self.mu, self.sigma = mu, sigma
        self.counts = tensors["counts"].cpu().long()
        if "correction_coef" in tensors:
            self.correction_coef = tensors["correction_coef"].cpu().double()
            self.correction_intercept = tensors["correction_intercept"].cpu().double()
            self.correction_fitted = tensors["correction_fitted"].cpu().bool()
