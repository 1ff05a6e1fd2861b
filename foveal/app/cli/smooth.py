"""``foveal smooth certify|predict``: randomized smoothing of a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from foveal.app.cli._app import app, fail

smooth_app = typer.Typer(
    help="Randomized smoothing: certified L2 robustness.", no_args_is_help=True
)
app.add_typer(smooth_app, name="smooth")


def _setup(model: Path, data: str, n_images: int, data_root: Path | None, size: int | None):
    import foveal
    from foveal.models import CheckpointError

    try:
        net = foveal.models.load(model)
        test = foveal.data.load(data, split="test", n=n_images, root=data_root, size=size)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        raise AssertionError from exc  # unreachable: fail exits
    return net, test


@smooth_app.command("certify")
def certify_command(
    model: Path = typer.Option(..., help="checkpoint directory (ideally noise-trained)"),
    data: str = typer.Option("shapes", help="dataset"),
    sigma: float = typer.Option(0.25, help="noise level"),
    n0: int = typer.Option(100, help="samples to pick the class"),
    n: int = typer.Option(1000, help="samples to bound its probability"),
    alpha: float = typer.Option(0.001, help="failure probability"),
    n_images: int = typer.Option(100, help="test images to certify"),
    batch_size: int = typer.Option(500, help="noise samples per forward pass"),
    data_root: Path = typer.Option(None, help="local root of a real dataset"),
    size: int = typer.Option(None, help="image side in pixels"),
    out: Path = typer.Option(None, help="write certify.json here"),
) -> None:
    """Certify test images (Cohen et al. CERTIFY); prints certified accuracy by radius."""
    from tqdm.auto import tqdm

    from foveal.defenses import ABSTAIN, Smooth
    from foveal.io import atomic_write_text

    if sigma <= 0 or n0 < 1 or n < 1 or not 0 < alpha < 1:
        fail(f"need sigma > 0, n0 >= 1, n >= 1, 0 < alpha < 1; got sigma={sigma}, n0={n0}, "
             f"n={n}, alpha={alpha}")  # fmt: skip
    net, test = _setup(model, data, n_images, data_root, size)
    smooth = Smooth(net, sigma)
    preds, radii = [], []
    for i in tqdm(range(len(test)), desc="certify", unit="img"):
        cert = smooth.certify(test.images[i : i + 1], n0=n0, n=n, alpha=alpha,
                              batch_size=batch_size)  # fmt: skip
        preds.append(int(cert.prediction[0]))
        radii.append(float(cert.radius[0]))
    labels = test.labels.tolist()
    correct = [p == y for p, y in zip(preds, labels, strict=True)]
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    table = {
        f"{r:g}": sum(c and rad >= r for c, rad in zip(correct, radii, strict=True)) / len(labels)
        for r in grid
    }
    abstain = sum(p == ABSTAIN for p in preds) / len(preds)
    typer.echo(f"certified accuracy by L2 radius (sigma={sigma}, n={n}): "
               + ", ".join(f"r>={k}: {100 * v:.1f}%" for k, v in table.items())
               + f"; abstained on {100 * abstain:.1f}%")  # fmt: skip
    if out is not None:
        record = {"sigma": sigma, "n0": n0, "n": n, "alpha": alpha, "certified": table,
                  "abstain_rate": abstain, "predictions": preds, "radii": radii,
                  "labels": labels}  # fmt: skip
        atomic_write_text(out / "certify.json", json.dumps(record, indent=2))


@smooth_app.command("predict")
def predict_command(
    model: Path = typer.Option(..., help="checkpoint directory"),
    data: str = typer.Option("shapes", help="dataset"),
    sigma: float = typer.Option(0.25, help="noise level"),
    n: int = typer.Option(100, help="noise samples per image"),
    alpha: float = typer.Option(0.001, help="significance level of the vote"),
    n_images: int = typer.Option(200, help="test images"),
    data_root: Path = typer.Option(None, help="local root of a real dataset"),
    size: int = typer.Option(None, help="image side in pixels"),
) -> None:
    """Smoothed predictions (Cohen et al. PREDICT): accuracy and abstention rate."""
    from foveal.defenses import ABSTAIN, Smooth

    net, test = _setup(model, data, n_images, data_root, size)
    pred = Smooth(net, sigma).predict(test.images, n=n, alpha=alpha)
    acc = float((pred == test.labels).float().mean())
    abstain = float((pred == ABSTAIN).float().mean())
    typer.echo(f"smoothed accuracy {100 * acc:.1f}%, abstained on {100 * abstain:.1f}% "
               f"({len(test)} images, sigma={sigma}, n={n})")  # fmt: skip
