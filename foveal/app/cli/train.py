"""``foveal train`` and ``foveal demo``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from foveal.app.cli._app import app, fail


@app.command("train")
def train_command(
    data: str = typer.Option("shapes", help="dataset name (see `foveal datasets`)"),
    arch: str = typer.Option(None, help="architecture (default: per dataset; `foveal models`)"),
    out: Path = typer.Option(Path("runs/model"), help="output directory (checkpoint, log)"),
    epochs: int = typer.Option(None, help="epochs [default: 8]"),
    batch_size: int = typer.Option(None, help="batch size [default: 128]"),
    lr: float = typer.Option(None, help="peak learning rate [default: 3e-3]"),
    optimizer: str = typer.Option(None, help="adam | adamw | sgd [default: adam]"),
    schedule: str = typer.Option(None, help="onecycle | cosine | constant [default: onecycle]"),
    weight_decay: float = typer.Option(None, help="weight decay [default: 0]"),
    seed: int = typer.Option(None, help="random seed [default: 0]"),
    width: int = typer.Option(None, help="width of shapes-cnn [default: 16]"),
    size: int = typer.Option(None, help="image side in pixels (shapes: 32)"),
    n_train: int = typer.Option(None, help="limit the training set"),
    n_test: int = typer.Option(None, help="limit the test set"),
    data_root: Path = typer.Option(None, help="local root of a real dataset"),
    config: Path = typer.Option(None, help="YAML/JSON file with these settings"),
    resume: bool = typer.Option(False, help="continue the run in --out where it stopped"),
    method: str = typer.Option(
        None, help="training recipe (`foveal list recipes`) [default: standard]"
    ),
    eps: str = typer.Option(None, help="attack budget, e.g. 8/255 (eps_F for dual)"),
    norm: str = typer.Option(None, help="linf | l2"),
    steps: int = typer.Option(None, help="inner attack steps [default: 10]"),
    alpha: str = typer.Option(None, help="inner step size [default: 2.5 eps / steps]"),
    fast: bool = typer.Option(None, "--fast/--no-fast", help="single-step inner attack"),
    eps_bg: str = typer.Option(None, help="dual: background budget [default: 5 eps]"),
    eps_low: str = typer.Option(None, help="part: budget of unimportant pixels [7/255]"),
    burn_in: int = typer.Option(None, help="part: epochs of madry first [1]"),
    beta: float = typer.Option(None, help="trades: weight of the KL term [6]"),
    reference: Path = typer.Option(None, help="sip-s: robust reference checkpoint"),
    noise_sd: float = typer.Option(None, help="gaussian: noise level [0.25]"),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="any setting of the recipe, KEY=VALUE (repeatable)"
    ),
    init: Path = typer.Option(None, help="start from this checkpoint's weights (same arch)"),
) -> None:
    """Train a classifier (standard or robust recipe); writes OUT/model.safetensors + json.

    The recipe options (--eps, --beta, ...) and --param KEY=VALUE are validated by the
    settings of --method: an option the method does not take is an error.
    `foveal list recipes` shows every recipe with its settings and their defaults.

    Under ``torchrun --nproc_per_node=N`` the same command trains with
    DistributedDataParallel.
    """
    from foveal.app.cli._app import parse_param
    from foveal.app.jobs import TrainJob, format_validation_error, load_config_file, run_train_job

    try:
        raw: dict[str, Any] = load_config_file(config) if config else {}
    except ValueError as exc:
        fail(str(exc))
        return
    training = dict(raw.pop("training", {}) or {})
    cli_training = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
        "schedule": schedule, "weight_decay": weight_decay, "seed": seed,
    }  # fmt: skip
    training.update({k: v for k, v in cli_training.items() if v is not None})
    cli_job = {
        "arch": arch, "width": width, "size": size, "n_train": n_train, "n_test": n_test,
        "data_root": str(data_root) if data_root else None,
        "init": str(init) if init else None,
    }  # fmt: skip
    raw.update({k: v for k, v in cli_job.items() if v is not None})
    recipe = dict(raw.pop("recipe", {}) or {})
    cli_recipe = {
        "method": method, "eps": eps, "norm": norm, "steps": steps, "alpha": alpha,
        "fast": fast, "eps_bg": eps_bg, "eps_low": eps_low, "burn_in": burn_in, "beta": beta,
        "reference": str(reference) if reference else None, "noise_sd": noise_sd,
    }  # fmt: skip
    shortcuts = {k: v for k, v in cli_recipe.items() if v is not None}
    try:
        params = dict(parse_param(p) for p in param)
    except ValueError as exc:
        fail(str(exc))
        return
    twice = sorted(set(shortcuts) & set(params))
    if twice:
        options = ", ".join(f"--{k.replace('_', '-')} and -p {k}=" for k in twice)
        fail(f"a recipe setting is given twice: {options}")
    recipe.update(shortcuts)
    recipe.update(params)
    raw.setdefault("data", data)
    if data != "shapes" or "data" not in raw:
        raw["data"] = data
    raw.setdefault("out", str(out))
    try:
        job = TrainJob(**raw, training=training, recipe=recipe)
    except ValidationError as exc:
        fail(f"invalid settings: {format_validation_error(exc)}")
        return
    start = time.perf_counter()
    try:
        result = run_train_job(job, resume=resume, progress=True)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    elapsed = time.perf_counter() - start
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # started by torchrun
        rank = dist.get_rank()
        dist.destroy_process_group()
        if rank != 0:
            return
    if result.interrupted:
        typer.echo(f"interrupted; state saved in {job.out} — rerun with --resume to continue")
        raise typer.Exit(130)
    last = result.history[-1] if result.history else {}
    acc = last.get("test_acc")
    acc_text = f"{100 * acc:.2f}%" if acc is not None else "n/a"
    typer.echo(f"test accuracy {acc_text} after {last.get('epoch', 0)} epochs "
               f"({elapsed:.0f} s); checkpoint: {job.out}")  # fmt: skip


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("runs/demo"), help="output directory"),
) -> None:
    """Train a `shapes` CNN (cached after the first run) and report its accuracy."""
    import torch

    import foveal
    from foveal.app.jobs import TrainJob, run_train_job
    from foveal.training import accuracy

    model_dir = out / "shapes-cnn"
    start = time.perf_counter()
    if (model_dir / "model.safetensors").exists():
        model = foveal.models.load(model_dir)
        typer.echo(f"using the cached model in {model_dir}")
    else:
        typer.echo("training a shapes-cnn on the built-in shapes data ...")
        result = run_train_job(TrainJob(out=str(model_dir)), progress=True)
        if result.interrupted:
            raise typer.Exit(130)
        model = result.model
    test = foveal.data.load("shapes", split="test")
    acc = accuracy(model, test)
    typer.echo(f"shapes test accuracy: {100 * acc:.2f}% ({len(test)} images)")
    # A first look at robustness: PGD on the whole image vs the dual set (small budget on the
    # object, a larger one on the background, where people do not look).
    from foveal.attacks import PGD
    from foveal.threats import Linf, dual

    sub = test.batch(slice(0, 500))
    x, y, fg = sub["image"], sub["label"], sub["mask"]
    rows = [
        ("PGD-10 Linf 4/255", Linf(4 / 255), 4 / 255),
        ("dual 4/255 object + 20/255 background", dual(fg, 4 / 255, 20 / 255), 20 / 255),
    ]
    for name, threat, eps in rows:
        x_adv = PGD(model, eps=eps, steps=10, seed=0)(x, y, threat=threat)
        with torch.no_grad():
            robust = float((model(x_adv).argmax(1) == y).float().mean())
        typer.echo(f"  accuracy under {name}: {100 * robust:.1f}% (500 images)")
    typer.echo(f"done in {time.perf_counter() - start:.0f} s")
