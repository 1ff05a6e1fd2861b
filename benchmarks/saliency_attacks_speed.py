"""Speed of the saliency-guided attacks against plain PGD / I-FGM, per step.

Each ratio is measured on pairs timed back to back in one process (order alternating), and the
median of the pair ratios is reported, so that ratios stay meaningful on a shared machine:

- ``dual`` with lambda = 0 against plain PGD, per step (same steps, Linf 4/255 + 20/255);
- ``dual`` with the salience term (lambda = 1) against plain PGD, per step, with the default
  fixation model (spectral residual on OpenCV's 64x64 grid) and with a 32x32 grid (the image's
  own size: upsampling a 32-pixel image to 64 adds no information but costs four times more);
- SAI-FGM against I-FGM (BIM, L2) with the same budget, per step; the superpixels and the CAM
  crop are computed once beforehand and passed as a ``Superpixel`` set (their one-time cost is
  timed separately);
- the noise-vector gradient against the MAX / AVG pooled pixel-gradient variants (Dong et al. 2020
  reports MAX / AVG ~30x slower than the noise gradient with its memory-heavy implementation);
- the perceptual-ball attack (20 L-BFGS iterations) per image against PGD-20.

Usage::

    .venv/bin/python benchmarks/saliency_attacks_speed.py                # ~5 min on 2 cores
    .venv/bin/python benchmarks/saliency_attacks_speed.py --repeats 3 --batch 32

Writes ``benchmarks/results/saliency_attacks_speed.json`` (override with ``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import foveal
from foveal.attacks import BIM, PGD, SAIFGM, DualPerturbation, PerceptualBall, sai_budget
from foveal.saliency import spectral_residual

HERE = Path(__file__).resolve().parent


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "saliency_attacks_speed.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = foveal.models.create("shapes-cnn", num_classes=10).eval()
    data = foveal.data.load("shapes", split="test", n=args.batch)
    x, y = data.images, data.labels
    steps = args.steps
    eps = sai_budget(4, x.shape)

    dual0 = DualPerturbation(model, eps_fg=4 / 255, eps_bg=20 / 255, lam=0.0, steps=steps)
    dual1 = DualPerturbation(model, eps_fg=4 / 255, eps_bg=20 / 255, lam=1.0, steps=steps)
    fg = dual0.foreground(x)
    pgd = PGD(model, eps=4 / 255, steps=steps)
    ifgm = BIM(model, norm="l2", eps=eps, steps=steps)
    sai = {
        mode: SAIFGM(model, delta=4, steps=steps, size=2.0, gradient=mode)
        for mode in ("noise", "max", "avg")
    }
    subspace = sai["noise"].subspace(x)
    pgd20 = PGD(model, eps=8 / 255, steps=20)
    perceptual = PerceptualBall(model, eps=8 / 255, steps=20)
    grid32 = DualPerturbation(model, eps_fg=4 / 255, eps_bg=20 / 255, lam=1.0, steps=steps,
                              density=lambda im: spectral_residual(im, resolution=32))  # fmt: skip
    methods: dict[str, Callable[[], object]] = {
        "pgd": lambda: pgd(x, y),
        "dual_lam0": lambda: dual0(x, y, masks=fg),
        "dual_lam1": lambda: dual1(x, y, masks=fg),
        "dual_lam1_grid32": lambda: grid32(x, y, masks=fg),
        "ifgm": lambda: ifgm(x, y),
        "sai_noise": lambda: sai["noise"](x, y, threat=subspace),
        "sai_max": lambda: sai["max"](x, y, threat=subspace),
        "sai_avg": lambda: sai["avg"](x, y, threat=subspace),
        "pgd20": lambda: pgd20(x, y),
        "perceptual20": lambda: perceptual(x, y),
        "superpixels_and_crop": lambda: sai["noise"].subspace(x),
    }
    # (numerator, denominator): each pair is timed back to back, order alternating, and the
    # ratio of each pair kept; the median of the pair ratios is robust to load that changes
    # between pairs (the machine is shared).
    pairs = {
        "dual_lam0_per_step_vs_pgd": ("dual_lam0", "pgd"),
        "dual_lam1_per_step_vs_pgd": ("dual_lam1", "pgd"),
        "dual_lam1_grid32_per_step_vs_pgd": ("dual_lam1_grid32", "pgd"),
        "sai_per_step_vs_ifgm": ("sai_noise", "ifgm"),
        "sai_max_vs_noise_gradient": ("sai_max", "sai_noise"),
        "sai_avg_vs_noise_gradient": ("sai_avg", "sai_noise"),
        "perceptual20_vs_pgd20": ("perceptual20", "pgd20"),
        "superpixels_once_vs_sai_run": ("superpixels_and_crop", "sai_noise"),
    }
    for fn in methods.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    pair_ratios: dict[str, list[float]] = {key: [] for key in pairs}
    for r in range(args.repeats):
        for key, (a, b) in pairs.items():
            first, second = (a, b) if r % 2 == 0 else (b, a)
            t_first, t_second = _time(methods[first]), _time(methods[second])
            ta, tb = (t_first, t_second) if r % 2 == 0 else (t_second, t_first)
            times[a].append(ta)
            times[b].append(tb)
            pair_ratios[key].append(ta / tb)
    med = {name: statistics.median(v) for name, v in times.items() if v}
    ratios = {key: statistics.median(v) for key, v in pair_ratios.items()}
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "threads": args.threads,
            "torch": torch.__version__,
            "foveal": foveal.__version__,
        },
        "setting": {
            "model": "shapes-cnn (untrained)",
            "batch": args.batch,
            "image": [3, 32, 32],
            "steps": steps,
            "repeats": args.repeats,
        },
        "median_seconds": med,
        "per_image_ms": {
            "pgd20": 1000 * med["pgd20"] / args.batch,
            "perceptual20": 1000 * med["perceptual20"] / args.batch,
            "superpixels_and_crop": 1000 * med["superpixels_and_crop"] / args.batch,
        },
        "ratios": ratios,
        "pair_ratios": pair_ratios,
        "all_seconds": times,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in ratios)
    for key, value in ratios.items():
        print(f"{key:<{width}}  {value:6.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
