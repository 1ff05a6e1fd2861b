"""Detection throughput: images/s of each detector's ``score`` (everything included: for SPD and
SMD the learned saliency model and the classifier's prediction, for JSD the logit Jacobian) and
its cost per image relative to one classifier forward pass (per image, in a batch of 256).

Run: ``python benchmarks/detection_speed.py [--batch 256] [--repeats 3] [--threads 2]``.
Writes ``benchmarks/results/detection_speed.json``. Weights are untrained (speed does not depend
on them); the detectors are fitted on a few random images first. Ratios are measured in one run,
interleaved, so they transfer across machines better than the absolute rates.

Settings per dataset shape: ``digits`` (1x28x28, mnist-cnn classifier, the SMD/SPD paper's ``mnist``
detector network) and ``shapes`` (3x32x32, shapes-cnn, the SMD/SPD paper's ``cifar`` network); the
masking model has width 8 (as in the ``detectors`` experiment of ``foveal reproduce``); CNN
detectors at width 1.0 (the paper) and 0.5. The odds-are-odd test runs with the authors' 9 noise
settings x 256 samples and with the 3 x 32 used in the experiment.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import foveal
from foveal.detectors import (
    FeatureSqueezing,
    ImageDetector,
    JacobianDetector,
    OddsAreOdd,
    SaliencyMapDetector,
    SalientPixelDetector,
    SteganalysisDetector,
)
from foveal.saliency import MaskingModel

RESULTS = Path(__file__).resolve().parent / "results" / "detection_speed.json"

SETUPS = {
    "digits": {"arch": "mnist-cnn", "shape": (1, 28, 28), "kwargs": {"input_size": 28}},
    "shapes": {"arch": "shapes-cnn", "shape": (3, 32, 32), "kwargs": {}},
}


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, batch: int, repeats: int, odds_batch: int) -> dict[str, Any]:
    setup = SETUPS[name]
    c, h, w = setup["shape"]
    torch.manual_seed(0)
    clf = foveal.models.create(setup["arch"], num_classes=10, in_channels=c, **setup["kwargs"])
    clf.eval()
    masker = MaskingModel(num_classes=10, in_channels=c, width=8).eval()
    x = torch.rand(batch, c, h, w)
    fit_x, fit_adv = torch.rand(20, c, h, w), torch.rand(20, c, h, w)
    detectors: dict[str, Any] = {}
    for width in (1.0, 0.5):
        kw = {"width": width, "epochs": 1}
        detectors[f"id (w={width:g})"] = ImageDetector(**kw)
        detectors[f"jsd (w={width:g})"] = JacobianDetector(clf, **kw)
        detectors[f"smd (w={width:g})"] = SaliencyMapDetector(clf, masker=masker, **kw)
        detectors[f"spd (w={width:g})"] = SalientPixelDetector(clf, masker=masker, **kw)
    detectors["squeeze"] = FeatureSqueezing(clf)
    detectors["steganalysis"] = SteganalysisDetector()
    for det in detectors.values():
        det.fit(fit_x, fit_adv if det.needs_adversarial else None)
    odds = {
        "odds (9 x 256, authors)": OddsAreOdd(clf, samples=256),
        "odds (3 x 32, experiment)": OddsAreOdd(
            clf, noise=["n0.005", "s0.005", "u0.005"], samples=32
        ),
    }
    for det in odds.values():
        det.fit(fit_x)

    def forward() -> None:
        with torch.no_grad():
            clf(x)

    rows: dict[str, dict[str, float]] = {}
    base = _median_time(forward, repeats)
    rows["classifier forward"] = {"images_per_s": batch / base, "x_forward": 1.0}
    for label, det in detectors.items():
        t = _median_time(lambda det=det: det.score(x, batch_size=batch), repeats)
        rows[label] = {"images_per_s": batch / t, "x_forward": t / base}
    xo = x[:odds_batch]
    for label, det in odds.items():
        t = _median_time(lambda det=det: det.score(xo, batch_size=odds_batch), 1)
        rows[label] = {
            "images_per_s": odds_batch / t,
            "x_forward": (t / odds_batch) / (base / batch),
            "ms_per_image": 1000 * t / odds_batch,
        }
    return {
        "classifier": setup["arch"],
        "shape": [c, h, w],
        "batch": batch,
        "odds_batch": odds_batch,
        "rows": rows,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results.items():
        lines += [
            f"{name} ({res['classifier']}, batch {res['batch']}; odds-are-odd on "
            f"{res['odds_batch']} images):",
            "",
            "| detector | images/s | cost / classifier forward |",
            "|---|---|---|",
        ]
        for label, row in res["rows"].items():
            lines.append(f"| {label} | {row['images_per_s']:.0f} | {row['x_forward']:.1f}x |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--odds-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--datasets", default="digits,shapes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {
        name: bench(name, args.batch, args.repeats, args.odds_batch)
        for name in args.datasets.split(",")
    }
    record = {
        "results": results,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
