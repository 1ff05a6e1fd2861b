"""Where PGD time goes: the cost per step and the fixed cost per call, foveal against
torchattacks, on the ``shapes`` CNN (batch 64, 32x32, 2 threads).

Each library runs PGD with 1 and with ``--steps`` steps, interleaved (one repeat of each, order
rotated) so that all four are timed under the same machine conditions. With medians ``t1`` and
``tK``: per step = ``(tK - t1) / (K - 1)``, fixed = ``t1 - per step`` (validation, binding the
set, the random start, the final projection). foveal's fixed cost includes what makes batched
and per-sample results equal: a hash of each image seeds that image's own generator, and the
start is drawn row by row in float64 (``foveal.attacks.base``).

Run: ``python benchmarks/attack_overhead.py [--repeats 40] [--steps 5]``; writes
``benchmarks/results/attack_overhead.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import foveal
from foveal.attacks import PGD

SETTINGS = {"linf": {"eps": 8 / 255, "alpha": 2 / 255}, "l2": {"eps": 0.5, "alpha": 0.1}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/attack_overhead.json"))
    args = parser.parse_args()
    if importlib.util.find_spec("torchattacks") is None:
        raise SystemExit("torchattacks is not installed (make test installs it)")
    import torchattacks

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = foveal.models.create("shapes-cnn", num_classes=10).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    k = args.steps
    record: dict[str, object] = {"batch": args.batch, "steps": k, "threads": args.threads}
    for norm, s in SETTINGS.items():
        ta_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
        fns: dict[str, Callable[[], object]] = {}
        for steps in (1, k):
            ours = PGD(model, eps=s["eps"], norm=norm, steps=steps, alpha=s["alpha"])
            ta = ta_cls(model, eps=s["eps"], alpha=s["alpha"], steps=steps, random_start=True)
            fns[f"foveal/{steps}"] = lambda a=ours: a(x, y)
            fns[f"torchattacks/{steps}"] = lambda a=ta: a(x, y)
        for fn in fns.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {name: [] for name in fns}
        names = list(fns)
        for rep in range(args.repeats):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                start = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - start)
        med = {name: 1000 * statistics.median(v) for name, v in times.items()}
        rows = {}
        for lib in ("foveal", "torchattacks"):
            per_step = (med[f"{lib}/{k}"] - med[f"{lib}/1"]) / (k - 1)
            rows[lib] = {"per_step_ms": per_step, "fixed_ms": med[f"{lib}/1"] - per_step}
        record[norm] = {"median_ms": med, "decomposition": rows}
        print(f"\n{norm}: ms (median of {args.repeats})")
        for lib, row in rows.items():
            print(f"  {lib:<14} per step {row['per_step_ms']:7.2f}   fixed {row['fixed_ms']:6.2f}")
        ratio = rows["foveal"]["per_step_ms"] / rows["torchattacks"]["per_step_ms"]
        print(f"  per-step ratio foveal/torchattacks {ratio:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
