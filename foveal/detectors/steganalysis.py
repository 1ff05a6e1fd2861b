"""Steganalysis detector: SPAM-686 features and an ensemble of Fisher linear discriminants
(Dong et al. 2020, section 4.2; Liu et al., CVPR 2019).

SPAM (Pevny, Bas & Fridrich 2010), second order, ``T = 3``, computed from the *quantised* uint8
image (perturbations below 1/255 vanish there, as they would in a saved image):

- along each of 8 directions ``d`` (right, left, down, up and the four diagonals), the
  differences ``D(p) = I(p) - I(p + d)`` are clipped to ``[-T, T]``;
- the triples ``(D(p), D(p + d), D(p + 2d))`` are counted into a 7x7x7 matrix, normalised to sum
  to 1 (the joint co-occurrence, as in the sealwatch port of SPAM; ``kind="transition"`` gives
  Pevny et al.'s conditional transition probabilities ``P(D(p+2d) | D(p), D(p+d))`` instead);
- the 4 straight directions are averaged into 343 features and the 4 diagonal ones into another
  343: 686 per channel. A constant image has all differences 0, so each half is one-hot at the
  centre ``(T, T, T)`` (index 171) and sums to 1.

Colour (not fixed by the papers): ``color="concat"`` (default) computes the 686 features per
channel and concatenates them (2058 for RGB); ``"mean"`` averages them over the channels;
``"gray"`` uses the channel mean (rounded) as one grey image.

Classifier: the ensemble of Kodovsky, Fridrich & Holub (2012): ``learners`` Fisher linear
discriminants, each trained on a random subspace of ``subspace`` features and a bootstrap
sample of the training set; each learner's threshold minimises its training error
``(P_FA + P_MD) / 2``. The detector's score is the mean over learners of the learner's signed
distance to its threshold in units of its projections' spread, and :meth:`votes` gives the
majority vote of the original ensemble. The subspaces, weights and thresholds are arrays, saved
as tensors.

Written by hand with numpy and scipy: the features are a few vectorised counting passes
(``numpy.bincount``) and each discriminant is one regularised linear solve
(``scipy.linalg.solve``); the Kodovsky ensemble is not in scikit-learn (a single
``LinearDiscriminantAnalysis`` on 2058 features would be the substitute, and overfits more).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from foveal.detectors.base import DETECTORS, Detector

__all__ = ["FLDEnsemble", "SteganalysisDetector", "spam_features"]

COLOR_MODES = ("concat", "mean", "gray")
SPAM_KINDS = ("joint", "transition")


def _to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        if images.dtype == torch.uint8:
            return images.cpu().numpy()
        from foveal._validation import check_images

        x = check_images(images).detach().cpu().double().numpy()
        return np.rint(x * 255.0).astype(np.uint8)
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"numpy images must be uint8 (0..255); got {arr.dtype}")
    return arr


def _counts(d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, t: int, kind: str) -> np.ndarray:
    """(B, K^3) normalised counts of clipped difference triples; inputs (B, ...) int."""
    k = 2 * t + 1
    b = d0.shape[0]
    code = ((np.clip(d0, -t, t) + t) * k + (np.clip(d1, -t, t) + t)) * k + (np.clip(d2, -t, t) + t)
    code = code.reshape(b, -1)
    offsets = (np.arange(b, dtype=np.int64) * k**3)[:, None]
    counts = np.bincount((code + offsets).ravel(), minlength=b * k**3).reshape(b, k**3)
    counts = counts.astype(np.float64)
    if kind == "joint":
        total = counts.sum(axis=1, keepdims=True)
        return counts / np.maximum(total, 1.0)
    cube = counts.reshape(b, k * k, k)
    cond = cube.sum(axis=2, keepdims=True)
    return (cube / np.maximum(cond, 1.0)).reshape(b, k**3)


def _straight(x: np.ndarray, t: int, kind: str) -> np.ndarray:
    """Left-to-right triples of the horizontal differences; x (B, H, W) int."""
    d = x[:, :, :-1] - x[:, :, 1:]
    return _counts(d[:, :, :-2], d[:, :, 1:-1], d[:, :, 2:], t, kind)


def _diagonal(x: np.ndarray, t: int, kind: str) -> np.ndarray:
    """Top-left to bottom-right triples of the diagonal differences; x (B, H, W) int."""
    d = x[:, :-1, :-1] - x[:, 1:, 1:]
    return _counts(d[:, :-2, :-2], d[:, 1:-1, 1:-1], d[:, 2:, 2:], t, kind)


def spam_features(
    images: torch.Tensor | np.ndarray,
    *,
    threshold: int = 3,
    color: str = "concat",
    kind: str = "joint",
) -> np.ndarray:
    """Second-order SPAM features (686 per channel) of a batch of images.

    Args:
        images: (N,C,H,W) floats in [0,1] (rounded to 0..255 first) or uint8; H, W >= 4.
        threshold: clipping threshold ``T`` (3 gives 7^3 = 343 features per half).
        color: ``"concat"`` (per channel, concatenated), ``"mean"`` (per channel, averaged) or
            ``"gray"`` (one grey image); see the module docstring.
        kind: ``"joint"`` co-occurrence (sums to 1 per half) or ``"transition"`` probabilities.

    Returns:
        float64 array (N, 2 (2T+1)^3 x channels) (channels = 1 unless ``color="concat"``).

    Example:
        >>> f = spam_features(torch.full((1, 1, 8, 8), 0.5))
        >>> f.shape, float(f[0, 171]), float(f[0, 343 + 171]), float(f[0, :343].sum())
        ((1, 686), 1.0, 1.0, 1.0)
    """
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}; got {color!r}")
    if kind not in SPAM_KINDS:
        raise ValueError(f"kind must be one of {SPAM_KINDS}; got {kind!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"threshold must be an integer >= 1; got {threshold!r}")
    raw = _to_uint8(images)
    if raw.ndim != 4:
        raise ValueError(f"images must have shape (N,C,H,W); got {raw.shape}")
    n, _, h, w = raw.shape
    if h < 4 or w < 4:
        raise ValueError(f"images must be at least 4x4 pixels for SPAM; got {h}x{w}")
    x = raw.astype(np.int16)
    if color == "gray":
        x = np.rint(x.mean(axis=1, keepdims=True)).astype(np.int16)
    planes = x.reshape(-1, x.shape[2], x.shape[3])  # (N*C', H, W)
    t = threshold
    straight = (
        _straight(planes, t, kind)                                   # right
        + _straight(planes[:, :, ::-1], t, kind)                     # left
        + _straight(planes.transpose(0, 2, 1), t, kind)              # down
        + _straight(planes.transpose(0, 2, 1)[:, :, ::-1], t, kind)  # up
    ) / 4.0  # fmt: skip
    diagonal = (
        _diagonal(planes, t, kind)                                   # down-right
        + _diagonal(planes[:, ::-1, ::-1], t, kind)                  # up-left
        + _diagonal(planes[:, :, ::-1], t, kind)                     # down-left
        + _diagonal(planes[:, ::-1, :], t, kind)                     # up-right
    ) / 4.0  # fmt: skip
    feats = np.concatenate([straight, diagonal], axis=1).reshape(n, -1, straight.shape[1] * 2)
    if color == "mean":
        return feats.mean(axis=1)
    return feats.reshape(n, -1)


class FLDEnsemble:
    """Kodovsky-Fridrich-Holub ensemble of Fisher linear discriminants on random subspaces.

    Args:
        learners: number of base learners (odd, so the vote has no ties; default 51).
        subspace: features per learner (default 300; capped at the feature count).
        bootstrap: train each learner on a bootstrap sample (default True, as Kodovsky et al.).
        ridge: relative ridge added to the within-class scatter (times its mean diagonal).
        seed: seeds the subspaces and bootstrap samples.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(0, 1, (100, 20)), rng.normal(0.5, 1, (100, 20))
        >>> ens = FLDEnsemble(learners=11, subspace=10).fit(a, b)
        >>> float((ens.decision(b) > 0).mean()) > 0.8
        True
    """

    def __init__(
        self,
        *,
        learners: int = 51,
        subspace: int = 300,
        bootstrap: bool = True,
        ridge: float = 1e-6,
        seed: int = 0,
    ) -> None:
        if isinstance(learners, bool) or not isinstance(learners, int) or learners < 1:
            raise ValueError(f"learners must be an integer >= 1; got {learners!r}")
        if isinstance(subspace, bool) or not isinstance(subspace, int) or subspace < 1:
            raise ValueError(f"subspace must be an integer >= 1; got {subspace!r}")
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0; got {ridge!r}")
        self.learners = learners
        self.subspace = subspace
        self.bootstrap = bool(bootstrap)
        self.ridge = float(ridge)
        self.seed = int(seed)
        self.subspaces = np.zeros((0, 0), dtype=np.int64)
        self.weights = np.zeros((0, 0))
        self.thresholds = np.zeros(0)
        self.scales = np.zeros(0)

    def fit(self, negative: np.ndarray, positive: np.ndarray) -> FLDEnsemble:
        """Fit on features of the negative (clean) and positive (adversarial) class."""
        from scipy.linalg import solve

        neg = np.asarray(negative, dtype=np.float64)
        pos = np.asarray(positive, dtype=np.float64)
        if neg.ndim != 2 or pos.ndim != 2 or neg.shape[1] != pos.shape[1]:
            raise ValueError(
                f"negative and positive must be (N, D) with the same D; got {neg.shape}, "
                f"{pos.shape}"
            )
        if len(neg) < 2 or len(pos) < 2:
            raise ValueError("each class needs at least 2 samples")
        rng = np.random.default_rng(self.seed)
        dim = neg.shape[1]
        k = min(self.subspace, dim)
        subspaces = np.empty((self.learners, k), dtype=np.int64)
        weights = np.empty((self.learners, k))
        thresholds = np.empty(self.learners)
        scales = np.empty(self.learners)
        for i in range(self.learners):
            sub = np.sort(rng.choice(dim, size=k, replace=False))
            a = neg[rng.integers(0, len(neg), len(neg))] if self.bootstrap else neg
            b = pos[rng.integers(0, len(pos), len(pos))] if self.bootstrap else pos
            a, b = a[:, sub], b[:, sub]
            mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
            scatter = (a - mu_a).T @ (a - mu_a) + (b - mu_b).T @ (b - mu_b)
            lam = self.ridge * max(float(np.trace(scatter)) / k, 1e-12)
            scatter[np.diag_indices(k)] += lam + 1e-12
            w = solve(scatter, mu_b - mu_a, assume_a="pos")
            proj_a, proj_b = a @ w, b @ w
            subspaces[i], weights[i] = sub, w
            thresholds[i] = _best_threshold(proj_a, proj_b)
            spread = np.concatenate([proj_a, proj_b]).std()
            scales[i] = spread if spread > 0 else 1.0
        self.subspaces, self.weights = subspaces, weights
        self.thresholds, self.scales = thresholds, scales
        return self

    def _projections(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64)
        if self.weights.size == 0:
            raise RuntimeError("FLDEnsemble is not fitted")
        if f.ndim != 2 or int(self.subspaces.max()) >= f.shape[1]:
            raise ValueError(f"features have shape {f.shape}; the ensemble expects (N, D)")
        gathered = f[:, self.subspaces]  # (N, L, k)
        proj = np.einsum("nlk,lk->nl", gathered, self.weights)
        return (proj - self.thresholds) / self.scales

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Mean standardised signed distance to the learners' thresholds (N,); > 0: positive."""
        return self._projections(features).mean(axis=1)

    def votes(self, features: np.ndarray) -> np.ndarray:
        """Fraction of learners voting "positive" (N,); the ensemble says positive above 0.5."""
        return (self._projections(features) > 0).mean(axis=1)


def _best_threshold(neg: np.ndarray, pos: np.ndarray) -> float:
    """Threshold minimising (P_FA + P_MD) / 2 for "positive if projection > t"."""
    values = np.concatenate([neg, pos])
    is_pos = np.concatenate([np.zeros(len(neg)), np.ones(len(pos))])
    order = np.argsort(values, kind="stable")
    v, lab = values[order], is_pos[order]
    # Threshold between v[i-1] and v[i]: everything from i on is called positive.
    missed = np.concatenate([[0.0], np.cumsum(lab)]) / len(pos)  # positives below
    false_alarm = (len(neg) - np.concatenate([[0.0], np.cumsum(1 - lab)])) / len(neg)
    err = 0.5 * (missed + false_alarm)
    i = int(np.argmin(err))
    if i == 0:
        return float(v[0] - 1e-9)
    if i == len(v):
        return float(v[-1])
    return float(0.5 * (v[i - 1] + v[i]))


@DETECTORS.register("steganalysis", help="SPAM-686 features + FLD ensemble (Liu et al. 2019)")
class SteganalysisDetector(Detector):
    """Steganalysis detector: SPAM-686 features and a Fisher-linear-discriminant ensemble.

    Args:
        threshold_t: SPAM clipping threshold ``T`` (default 3).
        color: ``"concat"`` (default), ``"mean"`` or ``"gray"`` (see :func:`spam_features`).
        kind: ``"joint"`` (default) or ``"transition"`` SPAM statistics.
        learners, subspace, bootstrap, ridge, seed: see :class:`FLDEnsemble`.

    Shape:
        images (N,C,H,W) in [0,1] -> scores (N,) (ensemble decision; > 0 is "adversarial").

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> x = torch.rand(60, 1, 16, 16, generator=gen).mul(0.2).add(0.4)
        >>> noisy = (x + torch.randn(60, 1, 16, 16, generator=gen) * 0.02).clamp(0, 1)
        >>> det = SteganalysisDetector(learners=11, subspace=100).fit(x, noisy)
        >>> det.score(x).shape
        torch.Size([60])
    """

    name = "steganalysis"
    needs_model = False

    def __init__(
        self,
        *,
        threshold_t: int = 3,
        color: str = "concat",
        kind: str = "joint",
        learners: int = 51,
        subspace: int = 300,
        bootstrap: bool = True,
        ridge: float = 1e-6,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if color not in COLOR_MODES:
            raise ValueError(f"color must be one of {COLOR_MODES}; got {color!r}")
        if kind not in SPAM_KINDS:
            raise ValueError(f"kind must be one of {SPAM_KINDS}; got {kind!r}")
        self.threshold_t = int(threshold_t)
        self.color = color
        self.kind = kind
        self.ensemble = FLDEnsemble(
            learners=learners, subspace=subspace, bootstrap=bootstrap, ridge=ridge, seed=seed
        )

    def features(self, images: torch.Tensor) -> np.ndarray:
        """SPAM features of ``images`` with this detector's settings."""
        return spam_features(images, threshold=self.threshold_t, color=self.color, kind=self.kind)

    def _fit(self, clean: torch.Tensor, adversarial: torch.Tensor | None) -> None:
        assert adversarial is not None
        self.ensemble.fit(self.features(clean), self.features(adversarial))

    def _score(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.ensemble.decision(self.features(images))).float()

    def votes(self, images: torch.Tensor) -> torch.Tensor:
        """Fraction of learners voting "adversarial" (N,)."""
        self._require_fitted()
        return torch.from_numpy(self.ensemble.votes(self.features(images))).float()

    def config(self) -> dict[str, Any]:
        e = self.ensemble
        return {
            "threshold_t": self.threshold_t,
            "color": self.color,
            "kind": self.kind,
            "learners": e.learners,
            "subspace": e.subspace,
            "bootstrap": e.bootstrap,
            "ridge": e.ridge,
            "seed": e.seed,
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        e = self.ensemble
        return {
            "subspaces": torch.from_numpy(e.subspaces.copy()),
            "weights": torch.from_numpy(e.weights.copy()),
            "thresholds": torch.from_numpy(e.thresholds.copy()),
            "scales": torch.from_numpy(e.scales.copy()),
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        keys = {"subspaces", "weights", "thresholds", "scales"}
        if set(tensors) != keys:
            raise ValueError(f"steganalysis state must have the keys {sorted(keys)}")
        e = self.ensemble
        e.subspaces = tensors["subspaces"].cpu().numpy().astype(np.int64)
        e.weights = tensors["weights"].cpu().numpy().astype(np.float64)
        e.thresholds = tensors["thresholds"].cpu().numpy().astype(np.float64)
        e.scales = tensors["scales"].cpu().numpy().astype(np.float64)
        n = e.subspaces.shape[0]
        if e.weights.shape != e.subspaces.shape or e.thresholds.shape != (n,):
            raise ValueError("steganalysis state arrays have inconsistent shapes")
