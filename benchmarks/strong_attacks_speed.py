"""Strong-attack speed: APGD-CE per step against PGD per step, and the AutoAttack-style ensemble
against torchattacks' AutoAttack on the same batch.

Every configuration is timed in the same process, interleaved (one repeat of each method, then
the next repeat, with the order rotated), and summarised by the median, so that ratios stay
meaningful on a shared machine. Per-step times divide a whole call by its number of steps (APGD
computes one more gradient than PGD, at its start point; that is included).

Usage::

    .venv/bin/python benchmarks/strong_attacks_speed.py                  # ~10 min on 2 cores
    .venv/bin/python benchmarks/strong_attacks_speed.py --repeats 3 --n 100

Uses the tests' trained model (the default ``foveal train --data shapes`` model, ~98% accurate)
when it is cached (``.cache/test/models``), else an untrained ``shapes-cnn`` (per-step costs do
not depend on training; the ensemble's time does, because it only re-attacks the points still
robust). Writes ``benchmarks/results/strong_attacks_speed.json``.
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

import foveal
from foveal.attacks import APGD, PGD, AutoAttack

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / ".cache" / "test" / "models" / f"shapes-cnn-default-v{foveal.__version__}"


def _interleaved(methods: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in methods}
    names = list(methods)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images per batch")
    parser.add_argument("--steps", type=int, default=50, help="PGD / APGD steps")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (step test)")
    parser.add_argument("--ensemble-repeats", type=int, default=3)
    parser.add_argument("--eps", type=float, default=1 / 255)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "strong_attacks_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    trained = (FIXTURE / "model.safetensors").exists()
    if trained:
        model = foveal.models.load(FIXTURE)
    else:
        torch.manual_seed(0)
        model = foveal.models.create("shapes-cnn", num_classes=10)
    model.eval()
    data = foveal.data.load("shapes", split="test", n=args.n)
    x, y = data.images, data.labels

    eps, steps = args.eps, args.steps
    pgd = PGD(model, eps=eps, steps=steps, alpha=eps / 4)
    apgd = APGD(model, eps=eps, steps=steps)
    step_times = _interleaved(
        {"pgd": lambda: pgd(x, y), "apgd_ce": lambda: apgd(x, y)}, args.repeats
    )
    per_step = {k: statistics.median(v) / steps for k, v in step_times.items()}

    ensemble = AutoAttack(model, eps=eps)
    methods: dict[str, Callable[[], object]] = {"foveal_autoattack": lambda: ensemble(x, y)}
    if importlib.util.find_spec("torchattacks") is not None:
        import torchattacks

        ta = torchattacks.AutoAttack(model, eps=eps, version="standard", n_classes=10, seed=0)
        methods["torchattacks_autoattack"] = lambda: ta(x, y)
    ens_times = _interleaved(methods, args.ensemble_repeats)
    ens = {k: statistics.median(v) for k, v in ens_times.items()}
    with torch.no_grad():
        accs = {
            "clean": float((model(x).argmax(1) == y).float().mean()),
            "foveal_autoattack": float((model(ensemble(x, y)).argmax(1) == y).float().mean()),
        }

    result = {
        "benchmark": "strong_attacks_speed",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "model": "shapes-cnn (trained, tests' default model)"
        if trained
        else "shapes-cnn (untrained)",
        "batch": args.n,
        "eps": eps,
        "steps": steps,
        "per_step_seconds": per_step,
        "apgd_over_pgd_per_step": per_step["apgd_ce"] / per_step["pgd"],
        "ensemble_seconds": ens,
        "ensemble_over_torchattacks": (
            ens["foveal_autoattack"] / ens["torchattacks_autoattack"]
            if "torchattacks_autoattack" in ens
            else None
        ),
        "accuracy": accs,
        "raw": {"step": step_times, "ensemble": ens_times},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "per_step_seconds",
                    "apgd_over_pgd_per_step",
                    "ensemble_seconds",
                    "ensemble_over_torchattacks",
                    "accuracy",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
