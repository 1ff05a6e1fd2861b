"""``foveal detect``: train, evaluate and cross-test adversarial-example detectors.

``foveal detect train --model CKPT --data digits --detector spd --attack fgsm --out DIR`` trains
one detector on clean training images and their adversarial versions (the SMD/SPD paper's attack
settings) and saves it; ``foveal detect eval --detector DIR --model CKPT --attack cw,deepfool``
tests it on attacked test images; ``foveal detect matrix --model CKPT --data digits`` trains ID,
JSD, SMD and SPD on each of FGSM, BIM, MIM, C&W, DeepFool and JSMA, tests each on all, and
writes ``matrix.json``, ``matrix.md`` and the heatmap ``matrix.png`` (the SMD/SPD paper, Fig. 2).

The detectors that need the learned saliency model (``needs_masker``: SMD and SPD) take
``--masker DIR`` (from ``foveal saliency train-mask``), or one is trained here on the clean
training images. ``foveal list detectors`` shows the registered detectors.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch
import typer

from foveal.app.cli._app import app, fail

detect_app = typer.Typer(
    help="Adversarial-example detectors: train, eval, matrix (`foveal list detectors`).",
    no_args_is_help=True,
)
app.add_typer(detect_app, name="detect")

_MODEL = typer.Option(None, "--model", help="classifier checkpoint directory")
_DATA = typer.Option("digits", "--data", help="dataset name (see `foveal datasets`)")
_ROOT = typer.Option(None, "--data-root", help="local root of a real dataset")
_SIZE = typer.Option(None, "--size", help="image side in pixels (dataset default if omitted)")
_MASKER = typer.Option(None, "--masker", help="masking-model directory (SMD / SPD)")
_MASK_EPOCHS = typer.Option(3, "--mask-epochs", help="epochs of the masking model if trained here")
_MASK_STEPS = typer.Option(
    None, "--mask-steps", help="steps of the masking model (overrides epochs)"
)
_WIDTH = typer.Option(
    1.0, "--width", help="filter multiplier of the detector CNN (1 = the SMD/SPD paper)"
)
_EPOCHS = typer.Option(10, "--epochs", help="detector training epochs (the SMD/SPD paper: 10)")
_ATTACK_BATCH = typer.Option(250, "--attack-batch", help="images per attack batch")
_PROGRESS = typer.Option(True, "--progress/--no-progress")
_SEED = typer.Option(0, "--seed", help="data and detector seed")
_DEVICE = typer.Option("cpu", "--device", help="torch device")


def _split(text: str, name: str) -> list[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        fail(f"{name} must name at least one item")
    return items


def _load_model(path: Path | None, device: str) -> torch.nn.Module:
    from foveal.models import CheckpointError, load

    if path is None:
        fail("--model CKPT is required (a checkpoint directory written by `foveal train`)")
        raise AssertionError
    try:
        return load(path, map_location=device).eval()
    except CheckpointError as exc:
        fail(str(exc))
        raise AssertionError from None


def _load_data(
    name: str, split: str, n: int | None, size: int | None, root: Path | None, seed: int
) -> Any:
    """``n`` images of a split: a seeded random subset (``digits`` and real datasets are stored
    sorted by class, so their first ``n`` images would cover few classes); the procedural
    ``shapes`` images are independent draws, so their first ``n`` are taken as they are."""
    from foveal.data import load

    try:
        if name == "shapes" or n is None:
            return load(name, split=split, n=n, size=size, root=root, seed=seed)
        full = load(name, split=split, size=size, root=root, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        raise AssertionError from None
    if n > len(full):
        fail(f"{name} has {len(full)} {split} images; asked for {n}")
    index = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))[:n]
    return full.subset(index.sort().values)


def _attack(name: str, model: torch.nn.Module) -> Any:
    """The SMD/SPD paper's settings for its six attacks; other registered attacks with defaults."""
    from foveal.attacks import ATTACKS
    from foveal.detectors import SMD_SPD_SETTINGS, smd_spd_attack

    try:
        if name in SMD_SPD_SETTINGS:
            return smd_spd_attack(name, model)
        return ATTACKS.get(name)(model)
    except (ValueError, TypeError) as exc:
        fail(str(exc))
        raise AssertionError from None


def _masker(path: Path | None, model: torch.nn.Module, images: torch.Tensor, epochs: int,
            steps: int | None, seed: int, device: str, progress: bool) -> Any:  # fmt: skip
    from foveal.saliency import load_masking_model, train_masking_model

    if path is not None:
        try:
            return load_masking_model(path, map_location=device)[0]
        except ValueError as exc:
            fail(str(exc))
    typer.echo(f"training the masking model on {len(images)} clean images (no --masker given)",
               err=True)  # fmt: skip
    return train_masking_model(model, images, epochs=epochs, steps=steps, seed=seed,
                               device=device, progress=progress).masker  # fmt: skip


def _detector_class(name: str) -> Any:
    from foveal.detectors import DETECTORS

    try:
        return DETECTORS.get(name)
    except ValueError as exc:
        fail(str(exc))
        raise AssertionError from None


def _make_detector(name: str, model: torch.nn.Module, masker: Any, width: float, epochs: int,
                   seed: int, device: str, progress: bool) -> Any:  # fmt: skip
    """A detector with the options its class takes (CNN training options, a seed, a masker)."""
    from foveal.detectors import CNNDetector, create_detector

    cls = _detector_class(name)
    kwargs: dict[str, Any] = {}
    if issubclass(cls, CNNDetector):
        kwargs = {"width": width, "epochs": epochs, "seed": seed, "device": device,
                  "progress": progress}  # fmt: skip
    elif "seed" in inspect.signature(cls).parameters:
        kwargs = {"seed": seed}
    if cls.needs_masker:
        kwargs["masker"] = masker
    return create_detector(name, model, **kwargs)


@detect_app.command("train")
def train_command(
    model: Path | None = _MODEL,
    data: str = _DATA,
    data_root: Path | None = _ROOT,
    size: int | None = _SIZE,
    detector: str = typer.Option(
        "spd", "--detector", help="detector name (`foveal list detectors`)"
    ),
    attack: str = typer.Option("fgsm", "--attack", help="attack whose examples it learns from"),
    n: int = typer.Option(500, "--n", help="clean training images (and as many adversarial)"),
    n_calib: int = typer.Option(
        0,
        "--n-calib",
        help="held-out clean images to set the threshold at --fpr (0: keep the detector's own)",
    ),
    fpr: float = typer.Option(0.05, "--fpr", help="target false-positive rate"),
    masker: Path | None = _MASKER,
    mask_epochs: int = _MASK_EPOCHS,
    mask_steps: int | None = _MASK_STEPS,
    width: float = _WIDTH,
    epochs: int = _EPOCHS,
    attack_batch: int = _ATTACK_BATCH,
    out: Path | None = typer.Option(None, "--out", help="output directory"),
    progress: bool = _PROGRESS,
    seed: int = _SEED,
    device: str = _DEVICE,
) -> None:
    """Train one detector and save it (detector.safetensors + detector.json)."""
    from foveal.detectors import generate_adversarial

    if out is None:
        fail("--out DIR is required")
        return
    if n < 2 or n_calib < 0:
        fail(f"--n must be >= 2 and --n-calib >= 0; got {n}, {n_calib}")
    name = detector.lower()
    cls = _detector_class(name)
    clf = _load_model(model, device)
    train = _load_data(data, "train", n + n_calib, size, data_root, seed)
    x, y = train.images[:n], train.labels[:n]
    mk = None
    if cls.needs_masker:
        mk = _masker(masker, clf, x, mask_epochs, mask_steps, seed, device, progress)
    det = _make_detector(name, clf, mk, width, epochs, seed, device, progress)
    info: dict[str, Any] = {"classifier": str(model), "data": data, "n": n, "detector": name}
    start = time.perf_counter()
    if det.needs_adversarial:
        x_adv, rate = generate_adversarial(_attack(attack.lower(), clf), x, y,
                                           batch_size=attack_batch, progress=progress,
                                           desc=attack)  # fmt: skip
        info.update(attack=attack.lower(), attack_success=round(rate, 4))
        det.fit(x, x_adv)
    elif det.takes_labels:
        det.fit(x, labels=y)
    else:
        det.fit(x)
    if n_calib > 0:
        det.calibrate(train.images[n:], fpr=fpr)
    info["seconds"] = round(time.perf_counter() - start, 1)
    det.save(out, info)
    typer.echo(f"trained {name} on {n} {data} images "
               f"({'attack ' + attack + ', ' if det.needs_adversarial else ''}"
               f"{info['seconds']} s); threshold {det.threshold:.4g}; saved to {out}")  # fmt: skip


@detect_app.command("eval")
def eval_command(
    detector: Path | None = typer.Option(None, "--detector", help="detector directory"),
    model: Path | None = _MODEL,
    data: str = _DATA,
    data_root: Path | None = _ROOT,
    size: int | None = _SIZE,
    attack: str = typer.Option(
        "fgsm,bim,mim,cw,deepfool,jsma", "--attack", help="comma-separated attacks to test on"
    ),
    n: int = typer.Option(500, "--n", help="test images"),
    attack_batch: int = _ATTACK_BATCH,
    out: Path | None = typer.Option(None, "--out", help="directory for eval.json / eval.md"),
    progress: bool = _PROGRESS,
    seed: int = _SEED,
    device: str = _DEVICE,
) -> None:
    """Detection accuracy, TPR, FPR and AUC of a saved detector on attacked test images."""
    from foveal.detectors import detection_accuracy, generate_adversarial, load_detector
    from foveal.io import atomic_write_text

    if detector is None:
        fail("--detector DIR is required (written by `foveal detect train`)")
        return
    clf = _load_model(model, device)
    try:
        det = load_detector(detector, model=clf, map_location=device)
    except ValueError as exc:
        fail(str(exc))
        return
    test = _load_data(data, "test", n, size, data_root, seed)
    clean_scores = det.score(test.images)
    rows = []
    for name in _split(attack, "--attack"):
        x_adv, rate = generate_adversarial(_attack(name, clf), test.images, test.labels,
                                           batch_size=attack_batch, progress=progress,
                                           desc=name)  # fmt: skip
        row = {"attack": name, "success": rate, **detection_accuracy(det, clean_scores, x_adv)}
        rows.append(row)
    lines = [f"{det.name} on {len(test)} {data} test images (threshold {det.threshold:.4g})", "",
             "| attack | attack success | detection acc. | TPR | FPR | AUC |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['attack']} | {r['success']:.3f} | {r['accuracy']:.3f} | "
                     f"{r['tpr']:.3f} | {r['fpr']:.3f} | {r['auc']:.3f} |")  # fmt: skip
    table = "\n".join(lines)
    typer.echo(table)
    if out is not None:
        record = {"detector": str(detector), "model": str(model), "data": data, "n": len(test),
                  "threshold": det.threshold, "rows": rows}  # fmt: skip
        atomic_write_text(out / "eval.json", json.dumps(record, indent=2) + "\n")
        atomic_write_text(out / "eval.md", table + "\n")


@detect_app.command("matrix")
def matrix_command(
    model: Path | None = _MODEL,
    data: str = _DATA,
    data_root: Path | None = _ROOT,
    size: int | None = _SIZE,
    detectors: str = typer.Option("id,jsd,smd,spd", "--detectors", help="comma-separated"),
    attacks: str = typer.Option(
        "fgsm,bim,mim,cw,deepfool,jsma", "--attacks", help="comma-separated (train and test)"
    ),
    n_train: int = typer.Option(500, "--n-train", help="clean training images per detector"),
    n_test: int = typer.Option(250, "--n-test", help="clean test images"),
    masker: Path | None = _MASKER,
    mask_epochs: int = _MASK_EPOCHS,
    mask_steps: int | None = _MASK_STEPS,
    width: float = _WIDTH,
    epochs: int = _EPOCHS,
    attack_batch: int = _ATTACK_BATCH,
    out: Path | None = typer.Option(
        None, "--out", help="output directory (default runs/detect-matrix-DATA)"
    ),
    progress: bool = _PROGRESS,
    seed: int = _SEED,
    device: str = _DEVICE,
) -> None:
    """Train each detector on each attack, test on all (SMD/SPD paper, Fig. 2): table + heatmap."""
    from foveal.detectors import generalization_matrix, generate_adversarial

    out = out or Path("runs") / f"detect-matrix-{data}"
    dets = _split(detectors, "--detectors")
    classes = [_detector_class(d) for d in dets]
    names = _split(attacks, "--attacks")
    if n_train < 2 or n_test < 2:
        fail(f"--n-train and --n-test must be >= 2; got {n_train}, {n_test}")
    clf = _load_model(model, device)
    train = _load_data(data, "train", n_train, size, data_root, seed)
    test = _load_data(data, "test", n_test, size, data_root, seed)
    start = time.perf_counter()
    mk = None
    if any(cls.needs_masker for cls in classes):
        mk = _masker(masker, clf, train.images, mask_epochs, mask_steps, seed, device, progress)
    adv_train: dict[str, torch.Tensor] = {}
    adv_test: dict[str, torch.Tensor] = {}
    settings: dict[str, Any] = {}
    for name in names:
        atk = _attack(name, clf)
        adv_train[name], _ = generate_adversarial(atk, train.images, train.labels,
                                                  batch_size=attack_batch, progress=progress,
                                                  desc=f"{name} (train)")  # fmt: skip
        adv_test[name], _ = generate_adversarial(atk, test.images, test.labels,
                                                 batch_size=attack_batch, progress=progress,
                                                 desc=f"{name} (test)")  # fmt: skip
        settings[name] = atk.config()
    kwargs: dict[str, Any] = {"width": width, "epochs": epochs, "seed": seed, "device": device}
    try:
        matrix, _ = generalization_matrix(
            clf, train.images, adv_train, test.images, adv_test, detectors=dets, masker=mk,
            detector_kwargs=kwargs, progress=progress,
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        fail(str(exc))
        return
    matrix.meta.update(model=str(model), data=data, attacks=settings,
                       seconds=round(time.perf_counter() - start, 1))  # fmt: skip
    paths = matrix.save(out)
    typer.echo(matrix.to_markdown())
    typer.echo("attack success on the test images: " + ", ".join(
        f"{k} {v:.2f}" for k, v in matrix.success.items()))  # fmt: skip
    typer.echo("wrote " + ", ".join(str(p) for p in paths))
