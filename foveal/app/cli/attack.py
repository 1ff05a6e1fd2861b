"""``foveal attack``: attack a checkpoint on a dataset, write the adversarial images and a summary.

Example::

    foveal attack --model runs/model --data shapes --attack pgd --norm linf --eps 8/255 \\
        --steps 20 --out runs/pgd
    foveal attack --model runs/model --attack pgd --threat dual --eps-fg 4/255 --eps-bg 20/255 \\
        --out runs/dual
    foveal attack --model runs/model --attack dual --eps-fg 4/255 --eps-bg 20/255 --lam 1 \\
        --out runs/dual-attack
    foveal attack --model runs/model --attack sai-fgm --delta 4 --phi 0.33 --beta 2 --out runs/sai
    foveal attack --model runs/model --attack perceptual --eps 8/255 --steps 20 --out runs/pb

The command is driven by two registries: ``foveal.attacks.ATTACKS`` (``--attack``) and
``foveal.threats.BUILDERS`` (``--threat``: how the perturbation set of a batch is made from the
batch, e.g. from its foreground masks); ``foveal list attacks`` and ``foveal list threats`` show
what is registered. Generic options (``--eps``, ``--steps``, ...) and
``--param KEY=VALUE`` pairs become keyword arguments of the attack's constructor, checked against
its signature, so a newly registered attack with its own hyper-parameters needs no CLI change.
Attacks that build their own perturbation set (``dual``, the ``sa*-fgm`` family) use it unless
``--threat`` is given; ``--eps`` reaches them only when given. The dataset's masks are passed
(``masks=``) to an attack that requires them in its configuration (``attack.requires_masks``),
e.g. the dual attack with ``-p mask_source=ground-truth``.

Outputs in ``--out``: ``adversarial.safetensors`` (adversarial images as float32, labels, clean
and adversarial predictions, success, dataset indices; the summary in the header metadata),
``summary.json`` (clean and robust accuracy, success rate, mean/max perturbation norm per region,
the attack's configuration and the throughput) and ``grid.png`` (up to 8 images in columns; rows:
original, adversarial, perturbation magnified to the full range, and the attack's mask — the
dual attack's foreground, the SA* attention crop, else the dataset mask or the normalised
perturbation magnitude).
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import typer

from foveal.app.cli._app import app, check_count, load_model, output_directory, parse_param
from foveal.app.grids import example_rows, write_grid
from foveal.threats import BUILDERS, ThreatOptions

if TYPE_CHECKING:
    from foveal.attacks import Attack


def _attack_kwargs(cls: type[Attack], given: dict[str, Any]) -> dict[str, Any]:
    accepted = inspect.signature(cls).parameters
    unknown = [k for k in given if k not in accepted]
    if unknown:
        options = ", ".join(f"--{k.replace('_', '-')}" for k in unknown)
        known = ", ".join(k for k in accepted if k != "model")
        raise ValueError(f"attack {cls.name!r} does not take {options} (it takes: {known})")
    return given


def _fraction(value: str | None, name: str) -> float | None:
    from foveal._validation import parse_fraction

    return None if value is None else parse_fraction(value, name)


@app.command("attack")
def attack_command(
    model: Path = typer.Option(..., help="checkpoint directory (from `foveal train`)"),
    out: Path = typer.Option(..., help="output directory"),
    data: str = typer.Option("shapes", help="dataset name (see `foveal datasets`)"),
    split: str = typer.Option("test", help="train | test"),
    n: int = typer.Option(512, help="number of images to attack"),
    size: int = typer.Option(None, help="image side in pixels (default: the checkpoint's)"),
    data_root: Path = typer.Option(None, help="local root of a real dataset"),
    attack: str = typer.Option("pgd", help="attack name (`foveal list attacks`)"),
    threat: str = typer.Option(
        None, help="perturbation set (`foveal list threats`) [default: the attack's own]"
    ),
    norm: str = typer.Option("linf", help="linf | l2"),
    eps: str = typer.Option(None, help="budget, e.g. 8/255 [default: 8/255 linf, 0.5 l2]"),
    eps_fg: str = typer.Option(None, help="foreground budget (--threat dual, --attack dual)"),
    eps_bg: str = typer.Option(None, help="background budget (--threat dual, --attack dual)"),
    lam: str = typer.Option(None, help="salience weight lambda (--attack dual)"),
    delta: str = typer.Option(None, help="budget in 0-255 units, eps = delta*sqrt(N) (sa*-fgm)"),
    phi: str = typer.Option(None, help="attention binarisation factor in [0,1] (sa*-fgm)"),
    beta: str = typer.Option(None, help="superpixel merge threshold, 0-255 units (sa*-fgm)"),
    steps: int = typer.Option(None, help="iterations (iterative attacks)"),
    alpha: str = typer.Option(None, help="absolute step size, e.g. 2/255"),
    rel_alpha: str = typer.Option(None, help="step size relative to the budget"),
    restarts: int = typer.Option(None, help="random restarts (best kept per sample)"),
    objective: str = typer.Option(None, help="ce | margin"),
    target_offset: int = typer.Option(
        0, help="targeted attack toward (label + offset) mod classes; 0 = untargeted"
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="extra attack keyword, KEY=VALUE (repeatable)"
    ),
    batch_size: int = typer.Option(128, help="images per batch"),
    seed: int = typer.Option(0, help="random-start seed"),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda"),
) -> None:
    """Attack a model on a dataset; write adversarial images and a JSON summary to --out.

    `foveal list attacks` and `foveal list threats` show the registered attacks and sets.
    """
    from safetensors.torch import save_file

    import foveal
    from foveal.attacks import ATTACKS, DEFAULT_EPS
    from foveal.batching import Batch, map_batches
    from foveal.io import atomic_path, atomic_write_text
    from foveal.models import read_meta
    from foveal.threats import parse_norm

    norm_name = parse_norm(norm, "--norm")
    eps_value = _fraction(eps, "--eps")
    if eps_value is None:
        eps_value = DEFAULT_EPS[norm_name]
    builder = None if threat is None else BUILDERS.get(threat)
    options = ThreatOptions(
        norm=norm_name,
        eps=eps_value,
        eps_fg=_fraction(eps_fg, "--eps-fg"),
        eps_bg=_fraction(eps_bg, "--eps-bg"),
    )
    cls = ATTACKS.get(attack)
    accepted = inspect.signature(cls).parameters
    own_budget = "delta" in accepted or "eps_fg" in accepted
    given: dict[str, Any] = {"seed": seed}
    if "norm" in accepted:
        given["norm"] = norm_name
    if eps is not None or ("eps" in accepted and not own_budget):
        given["eps"] = eps_value
    if "eps_fg" in accepted:
        for key, budget in (("eps_fg", options.eps_fg), ("eps_bg", options.eps_bg)):
            if budget is not None:
                given[key] = budget
    for key, value in (
        ("lam", _fraction(lam, "--lam")),
        ("delta", _fraction(delta, "--delta")),
        ("phi", _fraction(phi, "--phi")),
        ("beta", _fraction(beta, "--beta")),
        ("steps", steps),
        ("alpha", _fraction(alpha, "--alpha")),
        ("rel_alpha", _fraction(rel_alpha, "--rel-alpha")),
        ("restarts", restarts),
        ("objective", objective),
    ):
        if value is not None:
            given[key] = value
    given.update(parse_param(p) for p in param)
    check_count(n, "--n")
    check_count(batch_size, "--batch-size")
    with output_directory(out, "foveal attack"):
        meta = read_meta(model)
        net = load_model(model, device)
        shape = meta.get("input_shape")
        if size is None and isinstance(shape, (list, tuple)) and shape:
            size = int(shape[-1])
        dataset = foveal.data.load(data, split=split, n=n, size=size, root=data_root)
        attacker = cls(net, **_attack_kwargs(cls, given))
        want_masks = attacker.requires_masks
        if want_masks and not dataset.has_masks:
            hint = "mask_source=fixation, or " if "mask_source" in accepted else ""
            raise ValueError(
                f"attack {attack!r} needs per-image masks in this configuration; {data!r} has "
                f"none (use {hint}data with masks such as shapes)"
            )
        classes = int(meta.get("num_classes") or dataset.num_classes)
        grid_rows: list[torch.Tensor] = []

        def step(batch: Batch) -> dict[str, Any]:
            x, y = batch["image"], batch["label"]
            target = (y + target_offset) % classes if target_offset % classes else None
            batch_threat = None if builder is None else builder(batch, options)
            masks = batch["mask"] if want_masks else None
            clean = attacker.predict(x)
            result = attacker.run(x, y, target=target, threat=batch_threat, masks=masks)
            return {
                "adversarial": result.adversarial.float().cpu(),
                "labels": y.cpu(),
                "clean_predictions": clean.cpu(),
                "predictions": result.predictions.cpu(),
                "success": result.success.cpu(),
                "norms": {k: v.float().cpu() for k, v in result.norms.items()},
                "masks": masks,
            }

        def first(batch: Batch, out_: dict[str, Any]) -> None:
            extra = {} if out_["masks"] is None else {"masks": out_["masks"]}
            grid_rows.extend(
                example_rows(attacker, batch["image"], out_["adversarial"].to(device), batch, extra)
            )

        start = time.perf_counter()
        tensors = map_batches(
            step, dataset, batch_size=batch_size, device=device, progress=True,
            desc=f"{attack} on {data}", on_first=first,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        norms = tensors.pop("norms")
        tensors.pop("masks")
        total = len(dataset)
        labels = tensors["labels"]
        summary: dict[str, Any] = {
            "checkpoint": str(model),
            "data": {"name": data, "split": split, "n": total, "size": dataset.image_shape[-1]},
            "attack": attacker.config(),
            "threat": {
                "name": threat or "attack default",
                "norm": norm_name,
                "eps": eps_value,
                "eps_fg": options.eps_fg,
                "eps_bg": options.eps_bg,
            },
            "targeted": target_offset % classes != 0,
            "target_offset": target_offset,
            "clean_accuracy": float((tensors["clean_predictions"] == labels).float().mean()),
            "robust_accuracy": float((tensors["predictions"] == labels).float().mean()),
            "success_rate": float(tensors["success"].float().mean()),
            "norms": {
                region: {"mean": float(v.mean()), "max": float(v.max())}
                for region, v in norms.items()
            },
            "seconds": seconds,
            "images_per_second": total / seconds if seconds > 0 else None,
            "foveal_version": foveal.__version__,
        }
        text = json.dumps(summary, indent=2, sort_keys=True)
        tensors["success"] = tensors["success"].to(torch.uint8)
        tensors["index"] = torch.arange(total)
        with atomic_path(out / "adversarial.safetensors") as tmp:
            contiguous = {k: v.contiguous() for k, v in tensors.items()}
            save_file(contiguous, str(tmp), metadata={"foveal": text})
        atomic_write_text(out / "summary.json", text + "\n")
        if grid_rows:
            write_grid(grid_rows, out / "grid.png")
    typer.echo(
        f"clean accuracy {summary['clean_accuracy']:.4f}  robust accuracy "
        f"{summary['robust_accuracy']:.4f}  success rate {summary['success_rate']:.4f}  "
        f"({total} images, {seconds:.1f} s) -> {out}"
    )
