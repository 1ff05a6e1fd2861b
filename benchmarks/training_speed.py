"""Training throughput of the recipes on the `shapes` CNN: standard, madry (PGD-10) and fast.

Each recipe trains for one epoch over the same images; recipes run interleaved, several
rounds, and the table gives the median images/s and the ratio of each recipe's epoch time to
the standard epoch's (measured in the same round). A PGD-10 step is one forward and one
backward pass, so madry's limit is about 11x standard (10 attack passes plus the update), fast's
about 3x.

    python benchmarks/training_speed.py [--n 2048] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import foveal
from foveal.defenses.adversarial import make_recipe
from foveal.training import Recipe, fit

RECIPES = {
    "standard": lambda: Recipe(),
    "madry": lambda: make_recipe("madry", eps=8 / 255, steps=10, eval_n=0),
    "fast": lambda: make_recipe("madry", eps=8 / 255, fast=True, eval_n=0),
}
LIMITS = {"madry": 12.0, "fast": 3.0}


def one_epoch(name: str, data: foveal.data.ArrayDataset, batch_size: int) -> float:
    torch.manual_seed(0)
    model = foveal.models.create("shapes-cnn")
    start = time.perf_counter()
    fit(model, data, recipe=RECIPES[name](), config={"epochs": 1, "batch_size": batch_size})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2048, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = foveal.data.load("shapes", n=args.n)
    one_epoch("standard", data.subset(slice(0, 256)), args.batch_size)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in RECIPES}
    ratios: dict[str, list[float]] = {k: [] for k in RECIPES if k != "standard"}
    for _ in range(args.rounds):
        base = one_epoch("standard", data, args.batch_size)
        times["standard"].append(base)
        for name in ratios:
            t = one_epoch(name, data, args.batch_size)
            times[name].append(t)
            ratios[name].append(t / base)
    rows = []
    print(f"{'recipe':<10} {'images/s':>10} {'x standard':>11} {'limit':>7}")
    for name in RECIPES:
        ips = args.n / statistics.median(times[name])
        ratio = statistics.median(ratios[name]) if name in ratios else 1.0
        limit = LIMITS.get(name)
        shown = f"<= {limit:g}x" if limit else ""
        print(f"{name:<10} {ips:>10.0f} {ratio:>10.2f}x {shown:>7}")
        rows.append({"recipe": name, "images_per_s": ips, "ratio": ratio, "limit": limit,
                     "epoch_s": times[name]})  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"n": args.n, "batch_size": args.batch_size, "threads": args.threads,
              "rounds": args.rounds, "torch": torch.__version__, "rows": rows}  # fmt: skip
    (args.out / "training_speed.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
