"""Evaluate standard, Madry and AT-Dual `shapes` models under PGD and the dual attack.

The models come from `foveal train` (see docs/experiments/robust-training.md for the exact
commands); this script attacks the first N test images with a fixed seed and prints (and
optionally writes) a markdown table.

    python scripts/robust_training_shapes.py std=runs/std madry=runs/madry dual=runs/dual \\
        [--n 1000] [--out docs/experiments/robust-training-table.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import foveal
from foveal.attacks import PGD
from foveal.threats import Linf, dual


def evaluate(model: torch.nn.Module, data: foveal.data.ArrayDataset, batch: int = 250) -> dict:
    settings = {
        "clean": None,
        "PGD-20 Linf 4/255": ("ball", 4 / 255),
        "PGD-20 Linf 8/255": ("ball", 8 / 255),
        "dual 4/255 fg + 20/255 bg": ("dual", (4 / 255, 20 / 255)),
    }
    out = {}
    for name, spec in settings.items():
        correct = 0
        for lo in range(0, len(data), batch):
            b = data.batch(slice(lo, lo + batch))
            x, y = b["image"], b["label"]
            if spec is None:
                x_adv = x
            elif spec[0] == "ball":
                x_adv = PGD(model, eps=spec[1], steps=20, seed=0)(x, y, threat=Linf(spec[1]))
            else:
                fg, bg = spec[1]
                attack = PGD(model, eps=bg, steps=20, seed=0)
                x_adv = attack(x, y, threat=dual(b["mask"], fg, bg))
            with torch.no_grad():
                correct += int((model(x_adv).argmax(1) == y).sum())
        out[name] = correct / len(data)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="name=checkpoint_dir")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = foveal.data.load("shapes", split="test", n=args.n)
    rows = {}
    for item in args.models:
        name, path = item.split("=", 1)
        model = foveal.models.load(path)
        rows[name] = evaluate(model, data)
        print(name, json.dumps(rows[name]))
    cols = list(next(iter(rows.values())))
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r[c]:.1f}" for c in cols) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
        (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
