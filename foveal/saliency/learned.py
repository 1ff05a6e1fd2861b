"""The learned real-time saliency model (Dabkowski & Gal 2017, as used by the SMD/SPD paper).

A small masking network predicts, in one forward pass, a mask ``m`` in [0,1] that keeps what
a classifier needs to recognise class ``c``. It is trained against a frozen classifier on
clean images with the SMD/SPD paper's objective (Eq. 2, the Dabkowski-Gal loss without its TV term):

    L(m) = a_coef * mean((m + 5e-4)^a_pow)           area: the mask is small
           - p_coef * log f_c(Phi(x, m))              preservation: kept pixels suffice
           + d_coef * f_c(Phi(x, 1 - m))^d_pow        destruction: removing them defeats f
           (+ tv_coef * TV(m), off by default as in the SMD/SPD paper)

``Phi(x, m) = m * x + (1 - m) * alt`` replaces the removed pixels by, per image with
probability 1/2, a strong Gaussian blur of ``x`` or a random constant colour plus noise. The
class is the classifier's prediction, at training and at test time (the SMD/SPD paper uses the
predicted class at test time to avoid leaking the label; training on the prediction keeps
the two consistent).

Architecture (:class:`MaskingModel`), scaled to small images: a small CNN encoder (three
stride-2 stages), the class selector of Dabkowski & Gal (a class embedding ``E_c`` gates the
bottleneck features by ``sigmoid(<s, E_c>)`` per location), a U-Net upsampler (pixel-shuffle
x2, skip connection, residual block) back to half resolution, and a 1x1 convolution giving
``(a, b)``; ``m = |a| / (|a| + |b|)``, upsampled bilinearly.

All of this is written here: no maintained package ships the model or its objective (the
authors' code is a research repository for ResNet-50 on ImageNet). Checkpoints are
safetensors + JSON (``masker.safetensors``, ``masker.json``), never pickles.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foveal._validation import check_images, check_labels
from foveal.saliency.base import METHODS, SaliencyMethod, eval_mode
from foveal.saliency.fixation import gaussian_blur

__all__ = [
    "LearnedSaliency",
    "MaskObjective",
    "MaskingModel",
    "TrainResult",
    "evaluate_objective",
    "load_masking_model",
    "save_masking_model",
    "train_masking_model",
]

logger = logging.getLogger(__name__)

WEIGHTS = "masker.safetensors"
META = "masker.json"
_KIND = "masking-model"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class _UpBlock(nn.Module):
    """Pixel-shuffle x2, concatenate the skip features, residual conv block."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.Conv2d(cin, 4 * cout, 1), nn.PixelShuffle(2))
        self.merge = nn.Conv2d(cout + cskip, cout, 1)
        self.body = _block(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        if up.shape[2:] != skip.shape[2:]:
            up = F.interpolate(up, size=skip.shape[2:], mode="bilinear", align_corners=False)
        h = self.merge(torch.cat([up, skip], dim=1))
        return h + self.body(h)


class MaskingModel(nn.Module):
    """Masking network: encoder, class selector, U-Net upsampler, ``|a| / (|a| + |b|)`` head.

    Args:
        num_classes: classes of the classifier it explains.
        in_channels: image channels.
        width: channels of the first stage (doubling at each of the ``depth`` stages).
        depth: number of stride-2 encoder stages (>= 1).

    Shape:
        images (N,C,H,W) in [0,1], target (N,) int64 -> masks (N,1,H,W) in [0,1].

    Example:
        >>> net = MaskingModel(num_classes=10)
        >>> net(torch.rand(2, 3, 32, 32), torch.tensor([1, 2])).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self, *, num_classes: int, in_channels: int = 3, width: int = 16, depth: int = 3
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1 or width < 1 or depth < 1:
            raise ValueError(
                "num_classes, in_channels, width and depth must be >= 1; got "
                f"{num_classes}, {in_channels}, {width}, {depth}"
            )
        self.config = {
            "num_classes": int(num_classes),
            "in_channels": int(in_channels),
            "width": int(width),
            "depth": int(depth),
        }
        widths = [width * 2**i for i in range(depth + 1)]
        self.stem = _block(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _block(widths[i], widths[i + 1])) for i in range(depth)
        )
        self.embedding = nn.Embedding(num_classes, widths[-1])
        nn.init.normal_(self.embedding.weight, std=1.0)
        self.up = nn.ModuleList(
            _UpBlock(widths[i + 1], widths[i], widths[i]) for i in reversed(range(1, depth))
        )
        self.head = nn.Conv2d(widths[1] if depth >= 1 else widths[0], 2, 1)

    def forward(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[2:]
        feats = [self.stem(images)]
        for stage in self.down:
            feats.append(stage(feats[-1]))
        s = feats[-1]
        emb = self.embedding(target)[:, :, None, None]  # (N, C, 1, 1)
        gate = torch.sigmoid((s * emb).sum(dim=1, keepdim=True) / math.sqrt(s.shape[1]))
        x = s * gate
        for block, skip in zip(self.up, reversed(feats[1:-1]), strict=True):
            x = block(x, skip)
        ab = self.head(x).abs()
        mask = ab[:, :1] / (ab[:, :1] + ab[:, 1:] + 1e-6)
        return F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class MaskObjective:
    """The SMD/SPD paper's masking objective (see the module docstring), with its coefficients.

    Args:
        area_coef: weight of the area term (default 6.0: on ``shapes``, 1.0 lets the mask
            grow over the whole image and the area term must outweigh the destruction term).
        area_power: exponent of the area term (default 0.3, Dabkowski & Gal's code).
        preserve_coef: weight of ``-log f_c(Phi(x, m))`` (default 1.0).
        destroy_coef: weight of ``f_c(Phi(x, 1 - m))^destroy_power`` (default 2.0).
        destroy_power: exponent of the destruction term (default 1.0).
        tv_coef: weight of the total variation of the mask (default 0, as the SMD/SPD paper).
        blur_sigma: sigma of the blurred alternative, as a fraction of the image side
            (default 0.125).
    """

    area_coef: float = 6.0
    area_power: float = 0.3
    preserve_coef: float = 1.0
    destroy_coef: float = 2.0
    destroy_power: float = 1.0
    tv_coef: float = 0.0
    blur_sigma: float = 0.125

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
        if self.area_power <= 0 or self.destroy_power <= 0 or self.blur_sigma <= 0:
            raise ValueError(
                "area_power, destroy_power and blur_sigma must be > 0; got "
                f"{self.area_power}, {self.destroy_power}, {self.blur_sigma}"
            )

    def alternative(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per image: a Gaussian blur of it, or a random colour plus noise (prob. 1/2 each)."""
        n, c, h, w = images.shape
        pick = torch.rand(n, generator=generator) < 0.5
        colour = torch.rand(n, c, 1, 1, generator=generator)
        noise = 0.1 * torch.randn(n, c, h, w, generator=generator)
        flat = (colour + noise).clamp(0, 1).to(images.device, images.dtype)
        blurred = gaussian_blur(images, self.blur_sigma * min(h, w), mode="replicate")
        return torch.where(pick.to(images.device).view(n, 1, 1, 1), blurred, flat)

    def __call__(
        self,
        classifier: nn.Module,
        images: torch.Tensor,
        masks: torch.Tensor,
        target: torch.Tensor,
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """The objective's terms (scalars, batch means) and their weighted sum ``total``."""
        alt = self.alternative(images, generator)
        preserved = masks * images + (1 - masks) * alt
        destroyed = (1 - masks) * images + masks * alt
        logp_keep = F.log_softmax(classifier(preserved), dim=1).gather(1, target[:, None])
        p_gone = F.softmax(classifier(destroyed), dim=1).gather(1, target[:, None])
        area = (masks + 5e-4).pow(self.area_power).mean()
        preserve = -logp_keep.mean()
        destroy = p_gone.pow(self.destroy_power).mean()
        tv = (masks[..., 1:, :] - masks[..., :-1, :]).pow(2).mean() + (
            masks[..., :, 1:] - masks[..., :, :-1]
        ).pow(2).mean()
        total = (
            self.area_coef * area
            + self.preserve_coef * preserve
            + self.destroy_coef * destroy
            + self.tv_coef * tv
        )
        return {"total": total, "area": area, "preserve": preserve, "destroy": destroy, "tv": tv}


@dataclass
class TrainResult:
    """What :func:`train_masking_model` returns: the model and per-epoch mean losses."""

    masker: MaskingModel
    objective: MaskObjective
    history: list[dict[str, float]] = field(default_factory=list)


def _as_images(data: Any) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return check_images(data)
    images = getattr(data, "images", None)
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"data must be an image tensor (N,C,H,W) or a dataset with .images; got "
            f"{type(data).__name__}"
        )
    return check_images(images, "data.images")


def _num_classes(classifier: nn.Module, images: torch.Tensor) -> int:
    with torch.no_grad():
        return int(classifier(images[:1]).shape[1])


def train_masking_model(
    classifier: nn.Module,
    data: Any,
    *,
    labels: torch.Tensor | None = None,
    objective: MaskObjective | None = None,
    masker: MaskingModel | None = None,
    epochs: int = 3,
    steps: int | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    depth: int = 3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train a :class:`MaskingModel` against a frozen ``classifier`` on clean images.

    Args:
        classifier: the model to explain (taking [0,1] pixels); frozen and in eval mode
            during training, its mode and ``requires_grad`` flags restored afterwards.
        data: images (N,C,H,W) in [0,1] or a dataset with ``.images`` (e.g. ``ArrayDataset``).
        labels: class to explain per image; default the classifier's predictions (the class
            used at test time).
        objective: the loss (default :class:`MaskObjective()`).
        masker: a model to continue training (default a new one of ``width`` / ``depth``).
        epochs: passes over the data (ignored when ``steps`` is given).
        steps: total optimisation steps (overrides ``epochs``).
        batch_size, lr: Adam mini-batch size and learning rate.
        seed: seeds the initialisation, the shuffling and the removal alternatives.
        device: where to train (default the classifier's device).
        progress: show a tqdm progress bar.

    Returns:
        :class:`TrainResult` with the model (in eval mode) and per-epoch mean losses.

    Example:
        >>> import foveal
        >>> clf = foveal.models.create("shapes-cnn", width=8)
        >>> data = foveal.data.load("shapes", split="train", n=64)
        >>> result = train_masking_model(clf, data, steps=2, batch_size=32)
        >>> len(result.history) >= 1
        True
    """
    from tqdm.auto import tqdm

    images = _as_images(data)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if epochs < 1 and steps is None:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    objective = objective or MaskObjective()
    if device is None:
        param = next(classifier.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    n = images.shape[0]
    if labels is not None:
        labels = check_labels(labels, n)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    flags = [p.requires_grad for p in classifier.parameters()]
    with eval_mode(classifier):
        for p in classifier.parameters():
            p.requires_grad_(False)
        try:
            num_classes = _num_classes(classifier, images.to(device))
            if masker is None:
                masker = MaskingModel(
                    num_classes=num_classes,
                    in_channels=images.shape[1],
                    width=width,
                    depth=depth,
                )
            elif masker.config["num_classes"] != num_classes:
                raise ValueError(
                    f"masker has {masker.config['num_classes']} classes; the classifier has "
                    f"{num_classes}"
                )
            masker.to(device).train()
            opt = torch.optim.Adam(masker.parameters(), lr=lr)
            per_epoch = math.ceil(n / batch_size)
            total_steps = steps if steps is not None else epochs * per_epoch
            history: list[dict[str, float]] = []
            sums: dict[str, float] = {}
            count = 0
            bar = tqdm(total=total_steps, disable=not progress, desc="train-mask", unit="step")
            step = 0
            while step < total_steps:
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, batch_size):
                    if step >= total_steps:
                        break
                    idx = perm[i : i + batch_size]
                    x = images[idx].to(device)
                    if labels is not None:
                        y = labels[idx].to(device)
                    else:
                        with torch.no_grad():
                            y = classifier(x).argmax(dim=1)
                    terms = objective(classifier, x, masker(x, y), y, gen)
                    opt.zero_grad(set_to_none=True)
                    terms["total"].backward()
                    opt.step()
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach())
                    count += 1
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(terms['total'].detach()):.3f}")
                    if step % per_epoch == 0 or step == total_steps:
                        history.append({k: v / count for k, v in sums.items()} | {"step": step})
                        logger.info("train-mask step %d: %s", step, history[-1])
                        sums, count = {}, 0
            bar.close()
        finally:
            for p, flag in zip(classifier.parameters(), flags, strict=True):
                p.requires_grad_(flag)
    masker.eval()
    return TrainResult(masker=masker, objective=objective, history=history)


@torch.no_grad()
def evaluate_objective(
    classifier: nn.Module,
    masker: MaskingModel,
    images: torch.Tensor,
    *,
    objective: MaskObjective | None = None,
    target: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """The objective's terms on ``images`` with a fixed seed (both models in eval mode)."""
    images = check_images(images)
    objective = objective or MaskObjective()
    with eval_mode(classifier), eval_mode(masker):
        y = classifier(images).argmax(dim=1) if target is None else target
        terms = objective(
            classifier, images, masker(images, y), y, torch.Generator().manual_seed(seed)
        )
    return {k: float(v) for k, v in terms.items()}


# ------------------------------------------------------------------------------ checkpoints
def save_masking_model(
    masker: MaskingModel,
    directory: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``masker`` to ``directory`` as ``masker.safetensors`` + ``masker.json`` (atomic).

    ``meta`` (JSON-serialisable: the classifier it explains, the objective, metrics) is
    stored beside the architecture config, in the JSON file and in the weights' header.
    """
    from foveal._version import __version__
    from foveal.io import write_described_tensors

    if not isinstance(masker, MaskingModel):
        raise TypeError(f"masker must be a MaskingModel; got {type(masker).__name__}")
    full = {
        "kind": _KIND,
        "config": dict(masker.config),
        "meta": dict(meta or {}),
        "foveal_version": __version__,
    }
    return write_described_tensors(directory, masker.state_dict(), full, weights=WEIGHTS, meta=META)


def load_masking_model(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> tuple[MaskingModel, dict[str, Any]]:
    """Load a model written by :func:`save_masking_model`; returns ``(masker, description)``.

    Raises:
        ValueError: ``path`` is not a masking-model checkpoint (missing, pickle, corrupt).
    """
    from foveal.io import read_described_tensors

    state, desc, weights = read_described_tensors(
        path,
        weights=WEIGHTS,
        meta=META,
        kind=_KIND,
        what="masking model",
        hint="written by foveal.saliency.save_masking_model or `foveal saliency train-mask`",
        map_location=map_location,
    )
    config = desc.get("config")
    keys = {"num_classes", "in_channels", "width", "depth"}
    if not isinstance(config, dict) or set(config) != keys:
        raise ValueError(f"{weights}: config must have exactly the keys {sorted(keys)}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in config.values()):
        raise ValueError(f"{weights}: config values must be integers; got {config}")
    masker = MaskingModel(**config)
    try:
        masker.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights}: weights do not fit the config {config}: {exc}") from None
    masker.to(map_location).eval()
    return masker, desc


# ------------------------------------------------------------------------------ method
@METHODS.register("learned", help="learned real-time masking model (Dabkowski & Gal)")
class LearnedSaliency(SaliencyMethod):
    """Maps from a trained :class:`MaskingModel`, for the classifier's predicted class.

    Args:
        model: the classifier (gives the predicted class when ``target`` is None).
        masker: a :class:`MaskingModel` or the path of a saved one.
        normalize: min-max normalise each map.
        differentiable: keep the graph from the images to the mask.

    Shape:
        images (N,C,H,W) -> masks (N,1,H,W) in [0,1].

    Example:
        >>> import foveal
        >>> clf = foveal.models.create("shapes-cnn")
        >>> method = LearnedSaliency(clf, masker=MaskingModel(num_classes=10))
        >>> method(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    supports_differentiable = True
    takes_masker = True

    def __init__(
        self,
        model: nn.Module,
        *,
        masker: MaskingModel | str | os.PathLike[str],
        normalize: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(model, normalize=normalize, differentiable=differentiable)
        if isinstance(masker, (str, os.PathLike)):
            masker, _ = load_masking_model(masker)
        if not isinstance(masker, MaskingModel):
            raise TypeError(f"masker must be a MaskingModel or a path; got {type(masker).__name__}")
        self.masker = masker

    def _compute(self, images: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        n_cls = self.masker.config["num_classes"]
        if int(target.max()) >= n_cls:
            raise ValueError(f"target must be < {n_cls} (the masker's classes); got {target.max()}")
        param = next(self.masker.parameters())
        if param.device != images.device:
            self.masker.to(images.device)
        with (
            eval_mode(self.masker),
            torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled()),
        ):
            return self.masker(images, target)
