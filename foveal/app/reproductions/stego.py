"""Steganalysis detection rates of I-FGM and SAI-FGM (Dong et al. 2020, section 4.2 and Table 2).

Used by the ``sai`` reproduction (claim c). Dong et al. 2020 attacks 299-pixel ImageNet images; on
32-pixel ``shapes`` a 686-dimensional SPAM feature is estimated from too few pixel pairs, so the
comparison runs on ``shapes`` rendered at ``stego_size`` pixels (96 by default) with the
reference standard CNN fine-tuned at that size (the zoo's ``standard-96px``: a few epochs from
the 32-pixel weights; the network ends in global average pooling). Every attack gets the same L2
budget ``delta * sqrt(N)``; the steganalysis detector (SPAM-686 per colour channel and an
ensemble of Fisher linear discriminants) is trained on one half of the images (clean vs that
attack's examples) and tested on the other half.
"""

from __future__ import annotations

from typing import Any

import torch

from foveal.app.reproductions.base import Context

__all__ = ["steganalysis_rates"]


def _classifier(ctx: Context, size: int) -> Any:
    """The reference standard CNN, or its zoo version fine-tuned at ``size`` pixels."""
    import foveal

    native = foveal.data.load("shapes", split="test", n=1).images.shape[-1]
    return ctx.model("standard" if size == native else f"standard-{size}px")


def correctly_classified(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, n: int
) -> tuple[torch.Tensor, float]:
    """Indices of the first ``n`` images ``model`` classifies correctly, and its accuracy."""
    from foveal.batching import predict

    right = predict(model, images, batch_size=100) == labels
    return torch.nonzero(right).flatten()[:n], float(right.float().mean())


def changed_uint8(adv: torch.Tensor, x: torch.Tensor) -> float:
    """Fraction of the uint8 pixel values an attack changed (what steganalysis sees)."""
    return float(((adv * 255).round() != (x * 255).round()).float().mean())


def steganalysis_rates(ctx: Context) -> dict[str, Any]:
    """Detection accuracy (%) of the steganalysis detector per attack (JSON data).

    Returns:
        ``{"n", "size", "delta", "eps_l2", "superpixel", "classifier_accuracy", "success",
        "changed_pixels", "accuracy", "auc"}``; ``accuracy``, ``success`` and friends map
        ``"I-FGM"``, ``"SAI-FGM (beta = 0)"`` and ``"SAI-FGM (merged)"`` to percentages.
    """
    from foveal.attacks import BIM, SAIFGM, sai_budget
    from foveal.detectors import SteganalysisDetector, detection_accuracy, generate_adversarial

    p = ctx.params
    size, n, delta = p["stego_size"], p["stego_n"], p["delta"]
    model = _classifier(ctx, size)
    pool = ctx.data(split="test", n=2 * n, size=size)
    right, accuracy = correctly_classified(model, pool.images, pool.labels, n)
    x, y = pool.images[right], pool.labels[right]
    half = len(x) // 2
    # Dong et al.'s (2020) S = 5 on 299-pixel images, in proportion (at least one pixel).
    superpixel = max(1.0, round(5.0 * size / 299, 1))
    eps = sai_budget(delta, tuple(x.shape))
    attacks = {
        "I-FGM": BIM(model, norm="l2", eps=eps, steps=p["steps"], seed=0),
        "SAI-FGM (beta = 0)": SAIFGM(
            model, delta=delta, steps=p["steps"], size=superpixel, beta=0.0, seed=0
        ),
        "SAI-FGM (merged)": SAIFGM(
            model, delta=delta, steps=p["steps"], size=superpixel, beta=p["beta"], seed=0
        ),
    }
    out: dict[str, Any] = {
        "n": len(x),
        "size": size,
        "delta": delta,
        "eps_l2": eps,
        "superpixel": superpixel,
        "classifier_accuracy": 100.0 * accuracy,
        "success": {},
        "changed_pixels": {},
        "accuracy": {},
        "auc": {},
    }
    for name, attack in attacks.items():
        adv, success = generate_adversarial(attack, x, y, batch_size=50)
        det = SteganalysisDetector(seed=0).fit(x[:half], adv[:half])
        r = detection_accuracy(det, det.score(x[half:]), adv[half:])
        out["success"][name] = 100.0 * success
        out["changed_pixels"][name] = 100.0 * changed_uint8(adv, x)
        out["accuracy"][name] = 100.0 * r["accuracy"]
        out["auc"][name] = r["auc"]
    return out
