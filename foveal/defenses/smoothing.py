"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019) and noise training.

:class:`Smooth` wraps a base classifier ``f`` into ``g(x) = argmax_c P(f(x + e) = c)`` with
``e ~ N(0, sigma^2 I)`` added in [0,1] pixel space (before the model's own normalisation).

- :meth:`Smooth.predict` (PREDICT): the top-two counts ``nA, nB`` of ``n`` noisy samples; the
  top class if a two-sided binomial test of ``nA`` out of ``nA + nB`` at 0.5 has p-value
  <= ``alpha``, otherwise abstain (:data:`ABSTAIN` = -1).
- :meth:`Smooth.certify` (CERTIFY): guess the top class from ``n0`` samples, count it in ``n``
  fresh samples, lower Clopper-Pearson bound ``pA`` at level ``alpha``; abstain if
  ``pA < 0.5``, otherwise the certified L2 radius ``sigma * Phi^-1(pA)``.

Noise samples are drawn in batches (``batch_size`` images at a time) from an explicit seed.
:class:`GaussianNoiseRecipe` trains the base classifier with Gaussian data augmentation
(``foveal train --noise-sd``). The statistics are written here on scipy's ``binomtest`` and
``beta`` distribution; no maintained package offers a batched torch implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from scipy.stats import beta as beta_dist
from scipy.stats import binomtest, norm
from torch import nn

from foveal._modes import eval_mode
from foveal._validation import check_eps, check_images, check_probability
from foveal.training import RECIPES, Budget, Recipe, RecipeSettings

__all__ = ["ABSTAIN", "Certificate", "GaussianNoiseRecipe", "GaussianSettings", "Smooth"]

ABSTAIN = -1


@dataclass
class Certificate:
    """Per-image results of :meth:`Smooth.certify`: class (or -1) and L2 radius (0 if none)."""

    prediction: torch.Tensor  # (N,) int64
    radius: torch.Tensor  # (N,) float
    p_lower: torch.Tensor  # (N,) float


class Smooth(nn.Module):
    """A smoothed classifier around ``model`` with noise level ``sigma``.

    Its ``forward`` returns the base model's logits on one noisy copy of the input (what an
    EOT attack differentiates); :meth:`predict` and :meth:`certify` give the smoothed
    decisions.
    """

    def __init__(self, model: nn.Module, sigma: float, *, num_classes: int | None = None,
                 seed: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.sigma = check_eps(sigma, "sigma")
        self.model = model
        self.num_classes = num_classes
        self.seed = seed
        self._gen: torch.Generator | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype,
                            generator=self._generator(x.device))  # fmt: skip
        return self.model(x + self.sigma * noise)

    @torch.no_grad()
    def counts(self, x: torch.Tensor, n: int, *, batch_size: int = 1000) -> torch.Tensor:
        """Class counts (N, K) of the base model over ``n`` noisy copies of each image."""
        check_images(x, "x")
        if n < 1:
            raise ValueError(f"n must be >= 1; got {n}")
        gen = self._generator(x.device)
        out: torch.Tensor | None = None
        with eval_mode(self.model):
            for i in range(x.shape[0]):
                left = n
                while left > 0:
                    m = min(batch_size, left)
                    xi = x[i : i + 1].expand(m, -1, -1, -1)
                    noise = torch.randn(xi.shape, device=x.device, dtype=x.dtype, generator=gen)
                    logits = self.model(xi + self.sigma * noise)
                    pred = logits.argmax(1)
                    if out is None:
                        k = max(self.num_classes or 0, int(logits.shape[1]))
                        out = torch.zeros(x.shape[0], k, dtype=torch.long, device=x.device)
                    out[i] += torch.bincount(pred, minlength=out.shape[1])
                    left -= m
        assert out is not None
        return out

    def predict(self, x: torch.Tensor, n: int = 100, alpha: float = 0.001, *,
                batch_size: int = 1000) -> torch.Tensor:  # fmt: skip
        """PREDICT: the smoothed class per image, or ``ABSTAIN`` (-1)."""
        check_probability(alpha, "alpha")
        counts = self.counts(x, n, batch_size=batch_size)
        return self.decide(counts, alpha)

    @staticmethod
    def decide(counts: torch.Tensor, alpha: float) -> torch.Tensor:
        """PREDICT's decision from counts (N, K): top class if significant, else -1."""
        top2 = counts.topk(2, dim=1)
        out = torch.full((counts.shape[0],), ABSTAIN, dtype=torch.long)
        for i in range(counts.shape[0]):
            na, nb = int(top2.values[i, 0]), int(top2.values[i, 1])
            if na + nb > 0 and binomtest(na, na + nb, 0.5).pvalue <= alpha:
                out[i] = int(top2.indices[i, 0])
        return out

    def certify(self, x: torch.Tensor, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
                *, batch_size: int = 1000) -> Certificate:  # fmt: skip
        """CERTIFY: class and certified L2 radius per image (class -1, radius 0: abstain)."""
        check_probability(alpha, "alpha")
        guess = self.counts(x, n0, batch_size=batch_size).argmax(1)
        counts = self.counts(x, n, batch_size=batch_size)
        na = counts.gather(1, guess[:, None])[:, 0]
        return self.radius(guess, na, n, alpha, self.sigma)

    @staticmethod
    def radius(guess: torch.Tensor, na: torch.Tensor, n: int, alpha: float,
               sigma: float) -> Certificate:  # fmt: skip
        """Certificate from ``na`` successes of ``n``: radius ``sigma * Phi^-1(pA_lower)``."""
        pred = torch.empty_like(guess)
        rad = torch.zeros(guess.shape[0], dtype=torch.float64)
        lows = torch.zeros(guess.shape[0], dtype=torch.float64)
        for i in range(guess.shape[0]):
            k = int(na[i])
            low = float(beta_dist.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0
            lows[i] = low
            if low < 0.5:
                pred[i] = ABSTAIN
            else:
                pred[i] = guess[i]
                rad[i] = sigma * float(norm.ppf(low))
        return Certificate(pred.cpu(), rad, lows)


class GaussianNoiseRecipe(Recipe):
    """Gaussian data augmentation: cross-entropy on ``clip(x + N(0, sd^2))``."""

    name = "gaussian"

    def __init__(self, noise_sd: float) -> None:
        self.noise_sd = check_eps(noise_sd, "noise_sd")

    def loss(self, model, batch, *, epoch):
        x = batch["image"]
        noisy = x + self.noise_sd * torch.randn_like(x)
        logits = model(noisy)
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        return loss, {"loss": float(loss.detach()), "train_acc": float(acc)}

    def describe(self):
        return {"name": self.name, "noise_sd": self.noise_sd}


@RECIPES.register("gaussian", help="Gaussian data augmentation (for randomized smoothing)")
class GaussianSettings(RecipeSettings):
    """Settings of :class:`GaussianNoiseRecipe`."""

    method: Literal["gaussian"] = "gaussian"
    noise_sd: Budget = Field(0.25, description="standard deviation of the noise, in [0,1] pixels")

    def build(self, *, epochs: int | None = None) -> Recipe:
        return GaussianNoiseRecipe(self.noise_sd)
