"""Attack speed: foveal PGD-20 against the raw cost of 20 forward+backward passes, torchattacks and
ART, and region-budget (dual) PGD against plain PGD.

Every configuration is timed in the same process, interleaved (one repeat of each method, then
the next repeat, with the order rotated), and summarised by the median, so that ratios stay
meaningful on a shared machine; "paired" ratios are the median over repeats of the ratio of two
methods timed in the same round, which cancels slow drifts of the machine's speed. The "limit"
is 20 x (forward, cross-entropy, gradient w.r.t. the input) with nothing else: no attack can be
faster than that. For L2, ``foveal`` is the default step (rescale, then clip) and
``foveal_exact`` the same attack with ``projection="exact"``.

Usage::

    .venv/bin/python benchmarks/attack_speed.py                 # both models, ~20 min on 2 cores
    .venv/bin/python benchmarks/attack_speed.py --models shapes-cnn --repeats 3

Writes ``benchmarks/results/attack_speed.json`` (override with ``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import foveal
from foveal.attacks import PGD
from foveal.threats import dual

HERE = Path(__file__).resolve().parent
SETTINGS = {"linf": {"eps": 8 / 255, "alpha": 2 / 255}, "l2": {"eps": 0.5, "alpha": 0.1}}


def _limit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        torch.autograd.grad(loss, adv)
        adv = adv.detach()


def _methods(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    norm: str,
    steps: int,
    use_art: bool,
) -> dict[str, Callable[[], object]]:
    eps, alpha = SETTINGS[norm]["eps"], SETTINGS[norm]["alpha"]
    ours = PGD(model, eps=eps, norm=norm, steps=steps, alpha=alpha)
    # The dual set: the same step size, a smaller foreground budget and a larger background one.
    threat = dual(mask, eps / 2, 2 * eps, norm)
    methods: dict[str, Callable[[], object]] = {
        "limit": lambda: _limit(model, x, y, steps),
        "foveal": lambda: ours(x, y),
        "foveal_dual": lambda: ours(x, y, threat=threat),
    }
    if norm == "l2":  # Linf projects with one clamp whatever the option
        exact = PGD(model, eps=eps, norm=norm, steps=steps, alpha=alpha, projection="exact")
        methods["foveal_exact"] = lambda: exact(x, y)
    if importlib.util.find_spec("torchattacks") is not None:
        import torchattacks

        if norm == "linf":
            ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        else:
            ta = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        methods["torchattacks"] = lambda: ta(x, y)
    if use_art and importlib.util.find_spec("art") is not None:
        import numpy as np
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier

        clf = PyTorchClassifier(
            model=model,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=10,
            clip_values=(0.0, 1.0),
        )
        art = ProjectedGradientDescentPyTorch(
            clf,
            norm=np.inf if norm == "linf" else 2,
            eps=eps,
            eps_step=alpha,
            max_iter=steps,
            num_random_init=1,
            batch_size=x.shape[0],
            verbose=False,
        )
        xn, yn = x.numpy(), y.numpy()
        methods["art"] = lambda: art.generate(x=xn, y=yn)
    return methods


def bench(args: argparse.Namespace) -> dict[str, object]:
    torch.set_num_threads(args.threads)
    results: dict[str, object] = {}
    for arch in args.models:
        torch.manual_seed(0)
        model = foveal.models.create(arch, num_classes=10).eval()
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(args.batch, 3, args.size, args.size, generator=gen)
        y = torch.randint(0, 10, (args.batch,), generator=gen)
        mask = torch.zeros(args.batch, 1, args.size, args.size)
        q = args.size // 4
        mask[..., q : 3 * q, q : 3 * q] = 1
        repeats = args.repeats if arch != "resnet18" else max(1, args.repeats_resnet)
        for norm in args.norms:
            methods = _methods(model, x, y, mask, norm, args.steps, not args.no_art)
            # Warm-up with one step each: allocator, oneDNN primitives, first-call setup.
            for fn in _methods(model, x, y, mask, norm, 1, not args.no_art).values():
                fn()
            times: dict[str, list[float]] = {name: [] for name in methods}
            names = list(methods)
            for rep in range(repeats):
                order = names[rep % len(names) :] + names[: rep % len(names)]
                for name in order:
                    start = time.perf_counter()
                    methods[name]()
                    times[name].append(time.perf_counter() - start)
            med = {k: statistics.median(v) for k, v in times.items()}
            best = {k: min(v) for k, v in times.items()}
            key = f"{arch}/{norm}"
            results[key] = {
                "seconds": times,
                "median_seconds": med,
                "min_seconds": best,
                "images_per_second": {k: args.batch / v for k, v in med.items()},
                "ratios": _ratios(med),
                "ratios_of_min": _ratios(best),
                "paired_ratios": _paired(times),
                "repeats": repeats,
            }
            _print_block(key, med, best, args.batch)
            for name, value in _paired(times).items():
                print(f"  paired {name:<28}{value:>8.3f}")
    return results


def _ratios(t: dict[str, float]) -> dict[str, float]:
    ratios = {f"{k}/limit": t[k] / t["limit"] for k in t if k != "limit"}
    for other in ("torchattacks", "art"):
        if other in t:
            ratios[f"foveal/{other}"] = t["foveal"] / t[other]
    ratios["foveal_dual/foveal"] = t["foveal_dual"] / t["foveal"]
    if "foveal_exact" in t and "torchattacks" in t:
        ratios["foveal_exact/torchattacks"] = t["foveal_exact"] / t["torchattacks"]
    return ratios


def _paired(times: dict[str, list[float]]) -> dict[str, float]:
    """Median over repeats of the ratio within each repeat (both timed in the same round)."""
    pairs = [("foveal", "torchattacks"), ("foveal_exact", "torchattacks"), ("foveal", "limit")]
    pairs += [("foveal_exact", "limit"), ("foveal_dual", "foveal"), ("foveal", "art")]
    return {
        f"{a}/{b}": statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))
        for a, b in pairs
        if a in times and b in times
    }


def _print_block(key: str, med: dict[str, float], best: dict[str, float], batch: int) -> None:
    print(f"\n{key}  (median of repeats; min in the last columns)")
    print(f"  {'method':<14}{'images/s':>10}{'x limit':>10}{'min img/s':>11}{'x limit':>9}")
    for name in med:
        print(
            f"  {name:<14}{batch / med[name]:>10.1f}{med[name] / med['limit']:>10.3f}"
            f"{batch / best[name]:>11.1f}{best[name] / best['limit']:>9.3f}"
        )
    rm, rb = _ratios(med), _ratios(best)
    for name in rm:
        if "/limit" not in name:
            print(f"  {name:<28}{rm[name]:>8.3f}{rb[name]:>15.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["shapes-cnn", "resnet18"])
    parser.add_argument("--norms", nargs="+", default=["linf", "l2"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repeats-resnet", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-art", action="store_true", help="skip the ART column")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "attack_speed.json")
    args = parser.parse_args()
    if not args.no_art and importlib.util.find_spec("art") is None:
        print("adversarial-robustness-toolbox is not installed: the ART column is skipped")
    if importlib.util.find_spec("torchattacks") is None:
        print("torchattacks is not installed: its column is skipped")
    results = bench(args)
    versions = {"torch": torch.__version__, "foveal": foveal.__version__}
    for pkg, mod in (("torchattacks", "torchattacks"), ("art", "art")):
        if importlib.util.find_spec(mod) is not None:
            versions[pkg] = str(getattr(__import__(mod), "__version__", "?"))
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": args.threads,
        },
        "versions": versions,
        "settings": {
            "batch": args.batch,
            "size": args.size,
            "steps": args.steps,
            "norms": SETTINGS,
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
