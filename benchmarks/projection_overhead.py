"""Per-step cost of an L2 PGD update outside the model: foveal's two step maps (the default
"rescale, then clip" and the exact projection) against the update of torchattacks' ``PGDL2``,
next to one forward+backward pass.

Run: ``python benchmarks/projection_overhead.py [--batch 64] [--size 32] [--repeats 30]``.

All updates start from the same gradient and run 20 steps (eps 0.5, step 0.1, images in
[0,1]); foveal's step is ``threat.ascend_`` (normalised gradient step) followed by
``threat.rescale_`` (the default of the iterative attacks) or ``threat.project_`` (the exact
Euclidean projection onto the ball intersected with the box, ``projection="exact"``); the
reference is the update written the way ``torchattacks.PGDL2`` writes it (normalise, step,
rescale into the ball, clip to the box), which stays inside the set but is not the projection.
The forward+backward row is the ``shapes`` CNN on the same batch, for scale. Medians per step,
in milliseconds; writes ``benchmarks/results/projection_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import foveal
from foveal.threats import L2


def _median_ms(fn: Callable[[], object], repeats: int, per: int = 1) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/projection_overhead.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n, steps, eps, alpha = args.batch, 20, 0.5, 0.1
    x = torch.rand(n, 3, args.size, args.size, generator=gen)
    grad = torch.randn(x.shape, generator=gen)
    bound = L2(eps).bind(x)
    step = torch.tensor(alpha)

    def exact() -> torch.Tensor:
        d = torch.zeros_like(x)
        for _ in range(steps):
            d = bound.project_(bound.ascend_(d, grad, step))
        return d

    def rescale() -> torch.Tensor:
        d = torch.zeros_like(x)
        for _ in range(steps):
            d = bound.rescale_(bound.ascend_(d, grad, step))
        return d

    def rescale_then_clip() -> torch.Tensor:
        adv = x.clone()
        for _ in range(steps):
            g = grad / (grad.flatten(1).norm(dim=1) + 1e-10).view(n, 1, 1, 1)
            delta = adv + alpha * g - x
            factor = (eps / delta.flatten(1).norm(dim=1)).clamp(max=1.0)
            adv = (x + delta * factor.view(n, 1, 1, 1)).clamp(0, 1)
        return adv

    model = foveal.models.create("shapes-cnn", num_classes=10).eval()
    labels = torch.randint(0, 10, (n,), generator=gen)

    def forward_backward() -> None:
        d = torch.zeros_like(x).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x + d), labels)
        torch.autograd.grad(loss, d)

    rows = {}
    for _ in range(2):  # interleaved rounds; the second is reported
        rows = {
            "foveal exact projection": _median_ms(exact, args.repeats, steps),
            "foveal rescale, then clip (default)": _median_ms(rescale, args.repeats, steps),
            "rescale then clip (torchattacks PGDL2)": _median_ms(
                rescale_then_clip, args.repeats, steps
            ),
            "forward+backward (shapes-cnn)": _median_ms(forward_backward, args.repeats),
        }
    fb = rows["forward+backward (shapes-cnn)"]
    print(f"batch {n} x 3 x {args.size} x {args.size}, {args.threads} threads (ms per step)")
    for name, ms in rows.items():
        print(f"  {name:40s} {ms:8.3f}   {100 * ms / fb:5.1f}% of forward+backward")
    gap = rows["foveal exact projection"] - rows["rescale then clip (torchattacks PGDL2)"]
    print(f"  exact projection costs {gap:.3f} ms more per step = {100 * gap / fb:.1f}% of a step")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"batch": n, "size": args.size, "ms_per_step": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
