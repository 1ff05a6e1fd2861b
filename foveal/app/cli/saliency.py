"""``foveal saliency`` (maps, train-mask) and ``foveal explain`` (localisation benchmark).

``foveal saliency --model CKPT --data shapes --method gradcam --out DIR`` is a shortcut for
``foveal saliency maps ...``: it writes the maps (safetensors) and an image grid (PNG).
``foveal saliency train-mask --model CKPT --data shapes --out DIR`` trains the learned
real-time masking model against the classifier and saves it.
``foveal explain --model CKPT --data shapes --methods gradcam,gradient,...`` runs the
localisation benchmark of Elliott et al. 2019 (Table 1) on a dataset with boxes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import typer

from foveal.app.cli._app import app, fail

logger = logging.getLogger(__name__)

saliency_app = typer.Typer(
    help="Saliency maps and the learned real-time masking model (`foveal list saliency`).",
    no_args_is_help=False,
)
app.add_typer(saliency_app, name="saliency")

# Options shared by the commands.
_MODEL = typer.Option(None, "--model", help="classifier checkpoint directory")
_DATA = typer.Option("shapes", "--data", help="dataset name (see `foveal datasets`)")
_ROOT = typer.Option(None, "--data-root", help="local root of a real dataset")
_SIZE = typer.Option(None, "--size", help="image side in pixels (dataset default if omitted)")
_SEED = typer.Option(0, "--seed", help="data and method seed")
_DEVICE = typer.Option("cpu", "--device", help="torch device")
_MASKER = typer.Option(None, "--masker", help="masking-model directory (for the 'learned' method)")

#: Settings of the PGD attack whose perturbation magnitude is a saliency map (L2 steps
#: concentrate where the loss is sensitive; Linf sign steps saturate everywhere).
PGD_SETTINGS: dict[str, Any] = {"norm": "l2", "eps": 1.0, "steps": 10, "random_start": False}


def _load_model(path: Path | None, device: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    from foveal.models import CheckpointError, load, read_meta

    if path is None:
        fail("--model CKPT is required (a checkpoint directory written by `foveal train`)")
        raise AssertionError
    try:
        meta = read_meta(path)
        model = load(path, map_location=device)
    except CheckpointError as exc:
        fail(str(exc))
        raise AssertionError from None
    return model, meta


def _load_data(
    name: str, split: str, n: int | None, size: int | None, root: Path | None, seed: int
):
    from foveal.data import load

    try:
        return load(name, split=split, n=n, size=size, root=root, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        raise AssertionError from None


def _make_method(
    name: str,
    model: torch.nn.Module,
    meta: dict[str, Any],
    masker: Path | None,
    pgd_blur: float = 1.0,
):
    """A saliency method by name (``foveal list saliency``), built with what its class declares
    it takes (``takes_masker``: ``--masker``; ``takes_layer``: the checkpoint's architecture);
    ``pgd`` is the perturbation magnitude of L2 PGD (:data:`PGD_SETTINGS`)."""
    import inspect

    from foveal.saliency import METHODS, PerturbationMagnitude, create_method

    arch = meta.get("arch")
    if name == "pgd":
        from foveal.attacks import ATTACKS

        attack = ATTACKS.get("pgd")(model, **PGD_SETTINGS)
        return PerturbationMagnitude(model, attack=attack, blur_sigma=pgd_blur)
    cls = METHODS.get(name)
    kwargs: dict[str, Any] = {}
    if cls.takes_masker:
        if masker is None:
            raise ValueError(
                f"method {name!r} needs --masker DIR (train one with `foveal saliency train-mask`)"
            )
        kwargs["masker"] = masker
    if cls.takes_layer:
        from foveal.models import ARCHITECTURES

        if arch and arch in ARCHITECTURES:
            kwargs["arch"] = arch
    # Required constructor arguments the command line cannot give (a tensor, a module).
    missing = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in ("model", *kwargs)
    ]  # fmt: skip
    if missing:
        needs = ", ".join(f"{m}=" for m in missing)
        raise ValueError(
            f"method {name!r} is not available from the command line (it needs {needs})"
        )
    return create_method(name, model, **kwargs)


def _compute_maps(method: Any, images: torch.Tensor, batch_size: int, device: str) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch_size):
        out.append(method(images[i : i + batch_size].to(device)).cpu())
    return torch.cat(out) if out else torch.zeros(0, 1, *images.shape[2:])


def _write_grid(
    path: Path, images: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foveal.io import atomic_path
    from foveal.saliency import normalize_maps

    rows = len(images)
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
    shown = normalize_maps(maps)
    for r in range(rows):
        img = images[r].permute(1, 2, 0).numpy()
        if img.shape[2] == 1:
            img = img[:, :, 0]
        axes[r, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[r, 1].imshow(shown[r, 0].numpy(), cmap="inferno")
        axes[r, 2].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[r, 2].imshow(masks[r, 0].numpy(), cmap="winter", alpha=0.45)
        for c in range(3):
            axes[r, c].axis("off")
    for c, name in enumerate(("image", "map", "mask")):
        axes[0, c].set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _maps_impl(
    model: Path | None,
    data: str,
    data_root: Path | None,
    size: int | None,
    split: str,
    n: int,
    method: str,
    masker_rule: str,
    masker: Path | None,
    out: Path | None,
    batch_size: int,
    seed: int,
    device: str,
) -> None:
    from safetensors.torch import save_file

    from foveal.io import atomic_path, atomic_write_text
    from foveal.saliency import MASKERS

    if out is None:
        fail("--out DIR is required")
        return
    clf, meta = _load_model(model, device)
    ds = _load_data(data, split, n, size, data_root, seed)
    try:
        sal = _make_method(method, clf, meta, masker)
        rule = MASKERS.get(masker_rule)
    except ValueError as exc:
        fail(str(exc))
        return
    if masker_rule == "ground-truth":
        fail("--masker-rule ground-truth is not a rule on maps; use half-range, binarize, ...")
    start = time.perf_counter()
    maps = _compute_maps(sal, ds.images, batch_size, device)
    seconds = time.perf_counter() - start
    regions = rule()(maps)
    with torch.no_grad():
        preds = torch.cat(
            [clf(ds.images[i : i + batch_size].to(device)).argmax(1).cpu()
             for i in range(0, len(ds), batch_size)]
        )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        "maps": maps.contiguous(),
        "masks": regions.foreground.contiguous(),
        "labels": ds.labels.contiguous(),
        "predictions": preds.contiguous(),
    }
    info = {
        "method": method,
        "masker": masker_rule,
        "model": str(model),
        "data": data,
        "split": split,
        "n": len(ds),
        "seconds": round(seconds, 3),
    }
    with atomic_path(out / "maps.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"foveal": json.dumps(info)})
    atomic_write_text(out / "maps.json", json.dumps(info, indent=2) + "\n")
    k = min(8, len(ds))
    _write_grid(out / "grid.png", ds.images[:k], maps[:k], regions.foreground[:k], method)
    typer.echo(f"wrote {len(ds)} maps ({method}, {seconds:.2f} s) to {out}")


@saliency_app.callback(invoke_without_command=True)
def saliency_callback(
    ctx: typer.Context,
    model: Path | None = _MODEL,
    data: str = _DATA,
    data_root: Path | None = _ROOT,
    size: int | None = _SIZE,
    split: str = typer.Option("test", "--split"),
    n: int = typer.Option(16, "--n", help="number of images"),
    method: str = typer.Option(
        "gradcam", "--method", help="saliency method (`foveal list saliency`, or pgd)"
    ),
    masker_rule: str = typer.Option("half-range", "--masker-rule", help="map -> mask rule"),
    masker: Path | None = _MASKER,
    out: Path | None = typer.Option(None, "--out", help="output directory"),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = _SEED,
    device: str = _DEVICE,
) -> None:
    """Saliency maps (shortcut for `foveal saliency maps`) and the learned masking model."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None and out is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    _maps_impl(model, data, data_root, size, split, n, method, masker_rule, masker, out,
               batch_size, seed, device)  # fmt: skip


@saliency_app.command("maps")
def maps_command(
    model: Path | None = _MODEL,
    data: str = _DATA,
    data_root: Path | None = _ROOT,
    size: int | None = _SIZE,
    split: str = typer.Option("test", "--split"),
    n: int = typer.Option(16, "--n", help="number of images"),
    method: str = typer.Option(
        "gradcam", "--method", help="saliency method (`foveal list saliency`, or pgd)"
    ),
    masker_rule: str = typer.Option("half-range", "--masker-rule", help="map -> mask rule"),
    masker: Path | None = _MASKER,
    out: Path | None = typer.Option(None, "--out", help="output directory"),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = _SEED,
    device: str = _DEVICE,
) -> None:
    """Write saliency maps (safetensors), their masks and an image grid (PNG)."""
    _maps_impl(model, data, data_root, size, split, n, method, masker_rule, masker, out,
               batch_size, seed, device)  # fmt: skip


@saliency_app.command("train-mask")
def train_mask_command(
    model: Path | None = _MODEL,
    data: str = _DATA,
    data_root: Path | None = _ROOT,
    size: int | None = _SIZE,
    n: int | None = typer.Option(None, "--n", help="training images (default: the split)"),
    epochs: int = typer.Option(3, "--epochs"),
    steps: int | None = typer.Option(None, "--steps", help="total steps (overrides --epochs)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    width: int = typer.Option(16, "--width", help="masking-model width"),
    n_eval: int = typer.Option(500, "--n-eval", help="test images for the IoU report"),
    out: Path | None = typer.Option(None, "--out", help="output directory"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    seed: int = _SEED,
    device: str = _DEVICE,
) -> None:
    """Train the learned real-time masking model against a classifier and save it."""
    from foveal.saliency import (
        CenterBaseline,
        LearnedSaliency,
        percentile,
        save_masking_model,
        train_masking_model,
    )

    if out is None:
        fail("--out DIR is required")
        return
    clf, meta = _load_model(model, device)
    train = _load_data(data, "train", n, size, data_root, seed)
    start = time.perf_counter()
    result = train_masking_model(
        clf, train, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, width=width,
        seed=seed, device=device, progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {"train_seconds": round(seconds, 1), "history": result.history}
    test = _load_data(data, "test", n_eval, size, data_root, seed)
    if test.has_masks:
        gt = test.masks
        assert gt is not None
        learned = _compute_maps(
            LearnedSaliency(clf, masker=result.masker), test.images, 128, device
        )
        blob = CenterBaseline()(test.images)
        area = 100.0 * float(gt.mean())

        def iou(a: torch.Tensor) -> float:
            a, b = a.bool(), gt.bool()
            inter = (a & b).flatten(1).sum(1).float()
            union = (a | b).flatten(1).sum(1).clamp_min(1).float()
            return float((inter / union).mean())

        metrics["iou_mask_0.5"] = round(iou(learned > 0.5), 4)
        metrics["iou_mask_area_matched"] = round(iou(percentile(learned, area)), 4)
        metrics["iou_center_blob_area_matched"] = round(iou(percentile(blob, area)), 4)
        typer.echo(
            f"mask IoU with ground truth on {len(test)} test images: learned (m > 0.5) "
            f"{metrics['iou_mask_0.5']:.3f}; learned top-{area:.0f}% "
            f"{metrics['iou_mask_area_matched']:.3f}; centred blob top-{area:.0f}% "
            f"{metrics['iou_center_blob_area_matched']:.3f}"
        )
    desc = {
        "classifier": str(model),
        "classifier_arch": meta.get("arch"),
        "dataset": data,
        "objective": {k: float(v) for k, v in vars(result.objective).items()},
        "training": {
            "epochs": epochs,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "n": len(train),
        },
        "metrics": metrics,
    }
    save_masking_model(result.masker, out, desc)
    typer.echo(f"saved the masking model ({seconds:.0f} s of training) to {out}")


@app.command("explain")
def explain_command(
    model: Path | None = _MODEL,
    data: str = _DATA,
    data_root: Path | None = _ROOT,
    size: int | None = _SIZE,
    methods: str = typer.Option(
        "gradcam,gradient,smoothgrad,ig,learned,pgd", "--methods", help="comma-separated names"
    ),
    n: int = typer.Option(500, "--n", help="test images evaluated"),
    n_tune: int = typer.Option(200, "--n-tune", help="training images to choose alpha on"),
    masker: Path | None = _MASKER,
    out: Path | None = typer.Option(None, "--out", help="directory for explain.json / .md"),
    batch_size: int = typer.Option(100, "--batch-size"),
    seed: int = _SEED,
    device: str = _DEVICE,
) -> None:
    """Localisation benchmark (Elliott et al. 2019, Table 1): value / percent / mean thresholds.

    For each method and rule, alpha is chosen on --n-tune training images (value: square-root
    transform, alpha in 0..1 step 0.05; percent: top 5..100%; mean: 0..5 x mean), the largest
    connected component is boxed, and the error (IoU < 0.5) is reported on --n test images,
    with the pointing-game accuracy.
    """
    from foveal.io import atomic_write_text
    from foveal.metrics import localization_error, pointing_game, select_alpha

    clf, meta = _load_model(model, device)
    tune = _load_data(data, "train", n_tune, size, data_root, seed)
    test = _load_data(data, "test", n, size, data_root, seed)
    if not (tune.has_boxes and test.has_boxes):
        fail(f"dataset {data!r} has no boxes; the localisation benchmark needs boxes")
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        fail("--methods must name at least one method")
    rules = (("value", True), ("percent", False), ("mean", False))
    rows: list[dict[str, Any]] = []
    h = test.image_shape[1]
    tolerance = 15.0 * h / 224.0
    for name in names:
        try:
            method = _make_method(name, clf, meta, masker)
        except ValueError as exc:
            typer.secho(f"skipping {name}: {exc}", fg=typer.colors.YELLOW, err=True)
            continue
        start = time.perf_counter()
        maps_tune = _compute_maps(method, tune.images, batch_size, device)
        maps_test = _compute_maps(method, test.images, batch_size, device)
        seconds = time.perf_counter() - start
        row: dict[str, Any] = {"method": name, "seconds": round(seconds, 2)}
        for rule, sqrt in rules:
            assert tune.boxes is not None and test.boxes is not None
            alpha = select_alpha(maps_tune, tune.boxes, rule=rule, sqrt=sqrt)
            err, _ = localization_error(maps_test, test.boxes, rule=rule, alpha=alpha, sqrt=sqrt)
            row[rule] = round(err, 4)
            row[f"{rule}_alpha"] = alpha
        if test.has_masks:
            assert test.masks is not None
            row["pointing"] = round(float(pointing_game(maps_test, test.masks, tolerance=tolerance)
                                          .float().mean()), 4)  # fmt: skip
        rows.append(row)
        typer.echo(f"{name}: value {row['value']:.3f}  percent {row['percent']:.3f}  "
                   f"mean {row['mean']:.3f}  ({seconds:.1f} s)", err=True)  # fmt: skip
    if not rows:
        fail("no method could be evaluated")
    header = "| method | value | percent | mean | pointing acc. | time (s) |"
    lines = [
        f"Localisation error (IoU < 0.5) on {len(test)} {data} test images; alpha chosen on "
        f"{len(tune)} training images; pointing tolerance {tolerance:.1f} px. Lower error is "
        "better.",
        "",
        header,
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        point = f"{r['pointing']:.3f}" if "pointing" in r else "-"
        lines.append(f"| {r['method']} | {r['value']:.3f} | {r['percent']:.3f} | {r['mean']:.3f} "
                     f"| {point} | {r['seconds']:.1f} |")  # fmt: skip
    table = "\n".join(lines)
    typer.echo(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        record = {"model": str(model), "data": data, "n": len(test), "n_tune": len(tune),
                  "pgd": PGD_SETTINGS, "rows": rows}  # fmt: skip
        atomic_write_text(out / "explain.json", json.dumps(record, indent=2) + "\n")
        atomic_write_text(out / "explain.md", table + "\n")
