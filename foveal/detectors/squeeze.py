"""Feature squeezing (Xu, Evans & Qi, NDSS 2018), a cheap baseline.

Each squeezer removes detail an adversarial perturbation may rely on; the score of an image is
``max_s || softmax(f(x)) - softmax(f(s(x))) ||_1`` over the squeezers ``s``. Squeezers (strings,
so that a configuration is data):

- ``"bits:B"``: bit-depth reduction ``round(x (2^B - 1)) / (2^B - 1)``;
- ``"median:K"``: K x K median filter per channel (``scipy.ndimage.median_filter``, reflected
  borders; for even K scipy's window convention, as in the authors' code);
- ``"nlm:S-W-H"``: non-local means with patch size S, search distance W and filter strength
  H / 100 on [0,1] pixels (scikit-image ``denoise_nl_means``; the authors' "13-3-2" setting
  used OpenCV's variant, whose units differ, so this is an approximation; slow, so off by
  default).

Defaults follow the authors: grey images ``bits:1, median:2``; colour images ``bits:5,
median:2`` (their third colour squeezer, non-local means 13-3-2, is available as
``"nlm:13-3-2"``). :meth:`FeatureSqueezing.fit` needs only clean images and sets the threshold to
their (1 - fpr) quantile (default fpr 5%, the authors').

Written by hand around scipy and scikit-image, which provide the filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foveal._modes import eval_mode
from foveal._validation import check_probability
from foveal.detectors.base import DETECTORS, Detector, threshold_for_fpr

__all__ = ["FeatureSqueezing", "squeeze"]


def _parse(spec: str) -> tuple[str, tuple[int, ...]]:
    kind, _, arg = str(spec).partition(":")
    try:
        nums = tuple(int(a) for a in arg.split("-")) if arg else ()
    except ValueError:
        nums = ()
    want = {"bits": 1, "median": 1, "nlm": 3}
    if kind not in want or len(nums) != want[kind] or min(nums, default=0) < 1:
        raise ValueError(
            f"squeezer {spec!r} must be 'bits:B' (B >= 1), 'median:K' (K >= 1) or 'nlm:S-W-H'"
        )
    return kind, nums


def squeeze(images: torch.Tensor, spec: str) -> torch.Tensor:
    """Apply one squeezer (see the module docstring) to (N,C,H,W) images in [0,1].

    Example:
        >>> squeeze(torch.tensor([[[[0.2, 0.7]]]]), "bits:1")
        tensor([[[[0., 1.]]]])
    """
    kind, nums = _parse(spec)
    if kind == "bits":
        levels = 2 ** nums[0] - 1
        return torch.round(images * levels) / levels
    arr = images.detach().cpu().numpy()
    if kind == "median":
        from scipy.ndimage import median_filter

        k = nums[0]
        out = median_filter(arr, size=(1, 1, k, k), mode="reflect")
    else:
        from skimage.restoration import denoise_nl_means

        s, w, h = nums
        out = np.stack([
            np.moveaxis(
                denoise_nl_means(np.moveaxis(img, 0, -1), patch_size=s, patch_distance=w,
                                 h=h / 100.0, channel_axis=-1),
                -1, 0,
            )
            for img in arr
        ]).astype(arr.dtype)  # fmt: skip
    return torch.from_numpy(np.ascontiguousarray(out)).to(images.device, images.dtype)


@DETECTORS.register("squeeze", help="feature squeezing: L1 change of the softmax (Xu et al.)")
class FeatureSqueezing(Detector):
    """Feature-squeezing detector (see the module docstring).

    Args:
        model: the classifier (taking [0,1] pixels, returning logits).
        squeezers: squeezer specs; ``None`` picks the authors' defaults from the image channels
            at fit time.
        fpr: false-positive rate on the clean images given to :meth:`fit` (default 0.05).

    Shape:
        images (N,C,H,W) in [0,1] -> scores (N,) in [0, 2].

    Example:
        >>> import foveal
        >>> clf = foveal.models.create("shapes-cnn", width=4).eval()
        >>> det = FeatureSqueezing(clf).fit(torch.rand(20, 3, 32, 32))
        >>> det.squeezers
        ['bits:5', 'median:2']
    """

    name = "squeeze"
    needs_adversarial = False
    needs_model = True

    def __init__(
        self, model: nn.Module, *, squeezers: Sequence[str] | None = None, fpr: float = 0.05
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.squeezers: list[str] | None = None
        if squeezers is not None:
            if isinstance(squeezers, str) or not squeezers:
                raise ValueError(f"squeezers must be a non-empty list; got {squeezers!r}")
            for spec in squeezers:
                _parse(spec)
            self.squeezers = list(squeezers)
        self.fpr = check_probability(fpr, "fpr")

    def _probs(self, images: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters(), None)
        device = p.device if p is not None else images.device
        with eval_mode(self.model), torch.no_grad():
            return F.softmax(self.model(images.to(device)).float(), dim=1)

    def _score(self, images: torch.Tensor) -> torch.Tensor:
        assert self.squeezers is not None
        base = self._probs(images)
        dist = [(base - self._probs(squeeze(images, s))).abs().sum(1) for s in self.squeezers]
        return torch.stack(dist).amax(0).cpu()

    def _fit(self, clean: torch.Tensor, adversarial: torch.Tensor | None) -> None:
        if self.squeezers is None:
            grey = clean.shape[1] == 1
            self.squeezers = ["bits:1", "median:2"] if grey else ["bits:5", "median:2"]
        self.fitted = True
        scores = self.score(clean)
        self.threshold = threshold_for_fpr(scores, self.fpr)
        self.calibration = {"fpr": self.fpr, "n": int(scores.numel())}

    def config(self) -> dict[str, Any]:
        return {"squeezers": self.squeezers, "fpr": self.fpr}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise ValueError(f"feature squeezing has no learned arrays; got {sorted(tensors)}")
