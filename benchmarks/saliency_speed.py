"""Saliency speed: time per batch of each method relative to one forward+backward pass, and
SLIC + merge time per image at 32, 96 and 224 pixels.

Run: ``python benchmarks/saliency_speed.py [--batch 64] [--repeats 3] [--device cpu]``.
Writes ``benchmarks/results/saliency_speed.json``; the ratios are measured in the same run,
so they transfer across machines better than the absolute times.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import foveal
from foveal.saliency import (
    CAM,
    GradCAM,
    Gradient,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LearnedSaliency,
    MaskingModel,
    PerturbationMagnitude,
    SmoothGrad,
    SpectralResidual,
    slic_superpixels,
)

RESULTS = Path(__file__).resolve().parent / "results" / "saliency_speed.json"


def _time(fn: Callable[[], object], repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slic-images", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = args.device
    model = foveal.models.create("shapes-cnn").to(device).eval()
    x = foveal.data.load("shapes", split="test", n=args.batch).images.to(device)
    y = torch.zeros(args.batch, dtype=torch.long, device=device)

    def forward_backward() -> None:
        xr = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(xr), y).backward()

    # The machine may be shared: the reference pass is re-timed next to every method, and
    # each ratio uses the reference time measured alongside it.
    base_times = []
    methods = {
        "gradient": Gradient(model),
        "input-x-gradient": InputXGradient(model),
        "guided-backprop": GuidedBackprop(model),
        "smoothgrad (20 samples)": SmoothGrad(model, n_samples=20),
        "ig (32 steps)": IntegratedGradients(model, n_steps=32),
        "gradcam": GradCAM(model, arch="shapes-cnn"),
        "cam": CAM(model, arch="shapes-cnn"),
        "spectral-residual": SpectralResidual(),
        "learned (width 16)": LearnedSaliency(model, masker=MaskingModel(num_classes=10)),
    }
    try:
        from foveal.attacks import PGD

        methods["pgd-magnitude (L2, 10 steps)"] = PerturbationMagnitude(
            model, attack=PGD(model, norm="l2", eps=1.0, steps=10, random_start=False)
        )
    except ImportError:
        pass
    rows = {}
    for name, method in methods.items():
        pairs = [
            (_time(forward_backward, 1, device), _time(lambda m=method: m(x), 1, device))
            for _ in range(args.repeats)
        ]
        base = statistics.median(p[0] for p in pairs)
        seconds = statistics.median(p[1] for p in pairs)
        base_times.append(base)
        ratio = statistics.median(p[1] / p[0] for p in pairs)
        rows[name] = {"seconds": round(seconds, 5), "ratio": round(ratio, 2)}
        print(f"{name:<30} {seconds * 1e3:9.1f} ms  x{ratio:6.2f}")
    slic_rows = {}
    for size in (32, 96, 224):
        imgs = foveal.data.load("shapes", split="test", n=args.slic_images, size=size).images
        for beta in (0.0, 10.0):
            seconds = _time(
                lambda i=imgs, b=beta: slic_superpixels(i, size=4, beta=b, workers=1),
                args.repeats,
                "cpu",
            )
            key = f"{size}px beta={beta:g}"
            slic_rows[key] = {"ms_per_image": round(1e3 * seconds / len(imgs), 2)}
            print(f"SLIC S=4 + merge {key:<18} {1e3 * seconds / len(imgs):8.2f} ms/image")
    record = {
        "batch": args.batch,
        "image": [3, 32, 32],
        "model": "shapes-cnn (width 32)",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "forward_backward_seconds": round(statistics.median(base_times), 5),
        "methods": rows,
        "slic_merge": slic_rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
