"""Validated job descriptions shared by the CLI and the Python API.

A job is data, never code: YAML/JSON files are parsed with ``yaml.safe_load`` and validated by
pydantic models that reject unknown keys with a message naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from foveal.training import TrainConfig

__all__ = [
    "DEFAULT_ARCH",
    "RecipeConfig",
    "TrainJob",
    "build_recipe",
    "load_config_file",
    "run_train_job",
]

DEFAULT_ARCH = {
    "shapes": "shapes-cnn",
    "digits": "mnist-cnn",
    "mnist": "mnist-cnn",
    "cifar10": "resnet18",
    "cifar100": "resnet18",
    "stl10": "resnet18",
    "imagefolder": "resnet18",
    "cub200": "resnet18",
}


class RecipeConfig(BaseModel):
    """The training recipe and its hyper-parameters (``foveal train --method ...``)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["standard", "madry", "trades", "fat", "part", "dual", "sip-h", "sip-s",
                    "gaussian"] = "standard"  # fmt: skip
    eps: float = Field(8 / 255, ge=0, description="budget (eps_F for dual)")
    norm: Literal["linf", "l2"] = "linf"
    steps: int = Field(10, ge=1)
    alpha: float | None = Field(None, gt=0)
    fast: bool = False
    eps_bg: float | None = Field(None, ge=0, description="dual: background budget (5 eps)")
    eps_low: float = Field(7 / 255, ge=0, description="part: budget of unimportant pixels")
    burn_in: int = Field(1, ge=0, description="part: epochs of madry first")
    beta: float = Field(6.0, ge=0, description="trades: weight of the KL term")
    reference: str | None = Field(None, description="sip-s: robust reference checkpoint")
    fraction: float = Field(0.5, gt=0, le=1, description="sip-s: gradient mass kept")
    noise_sd: float = Field(0.25, ge=0, description="gaussian: noise level")
    eval_n: int = Field(500, ge=0, description="held-out images for per-epoch PGD accuracy")
    eval_steps: int = Field(10, ge=1)

    @field_validator("eps", "eps_bg", "eps_low", "alpha", mode="before")
    @classmethod
    def _fraction(cls, v: object) -> object:
        from foveal._validation import parse_fraction

        return parse_fraction(v) if isinstance(v, str) else v


def build_recipe(cfg: RecipeConfig, *, epochs: int) -> Any:
    """The :class:`foveal.training.Recipe` that ``cfg`` describes."""
    from foveal.training import Recipe

    if cfg.method == "standard":
        return Recipe()
    if cfg.method == "gaussian":
        from foveal.defenses.smoothing import GaussianNoiseRecipe

        return GaussianNoiseRecipe(cfg.noise_sd)
    from foveal.defenses.adversarial import make_recipe

    common: dict[str, Any] = {"eps": cfg.eps, "norm": cfg.norm, "steps": cfg.steps,
                              "alpha": cfg.alpha, "fast": cfg.fast, "eval_n": cfg.eval_n,
                              "eval_steps": cfg.eval_steps}  # fmt: skip
    if cfg.method == "trades":
        common["beta"] = cfg.beta
    elif cfg.method == "fat":
        common["epochs"] = epochs
    elif cfg.method == "part":
        common.update(eps_low=cfg.eps_low, burn_in=cfg.burn_in)
    elif cfg.method == "dual":
        common["eps_bg"] = cfg.eps_bg
    elif cfg.method == "sip-s":
        if not cfg.reference:
            raise ValueError("sip-s needs a robust reference model: --reference CKPT")
        import foveal

        common.update(reference=foveal.models.load(cfg.reference), fraction=cfg.fraction)
    return make_recipe(cfg.method, **common)


class TrainJob(BaseModel):
    """Everything ``foveal train`` needs; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    data: str = "shapes"
    arch: str | None = Field(None, description="architecture (default: per dataset)")
    width: int | None = Field(None, ge=1, description="width of shapes-cnn")
    size: int | None = Field(None, ge=8, description="image side in pixels")
    n_train: int | None = Field(None, ge=1)
    n_test: int | None = Field(None, ge=1)
    data_root: str | None = None
    out: str = "runs/model"
    init: str | None = Field(None, description="start from this checkpoint's weights")
    training: TrainConfig = Field(default_factory=TrainConfig)
    recipe: RecipeConfig = Field(default_factory=RecipeConfig)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file into plain data (never executes anything)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping; got {type(data).__name__}")
    return data


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the key: ``training.lr: Input should be greater than 0``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{key}: {msg} (got {err.get('input')!r})")
    return "; ".join(lines)


def run_train_job(job: TrainJob, *, resume: bool = False, progress: bool = False) -> Any:
    """Load data, build the model with the data's normalisation, train, return the result."""
    import foveal
    from foveal.training import fit

    train = foveal.data.load(job.data, split="train", n=job.n_train, size=job.size,
                             root=job.data_root)  # fmt: skip
    test = foveal.data.load(job.data, split="test", n=job.n_test, size=job.size,
                            root=job.data_root)  # fmt: skip
    arch = job.arch or DEFAULT_ARCH.get(job.data, "resnet18")
    imgs = train.images
    mean = imgs.mean(dim=(0, 2, 3)).tolist()
    std = imgs.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    c, h, w = train.image_shape
    kwargs: dict[str, Any] = {}
    if job.width is not None:
        kwargs["width"] = job.width
    if arch in ("mnist-cnn", "cifar-cnn", "assira-cnn"):
        kwargs["input_size"] = h
    import torch

    torch.manual_seed(job.training.seed)  # the initial weights follow the seed too
    model = foveal.models.create(
        arch, num_classes=train.num_classes, in_channels=c, mean=mean, std=std, **kwargs
    )
    if job.init:
        source = foveal.models.load(job.init)
        init_meta = foveal.models.read_meta(job.init)
        if init_meta.get("arch") != arch:
            raise ValueError(
                f"init checkpoint {job.init!r} is a {init_meta.get('arch')!r}; this job trains "
                f"a {arch!r}"
            )
        try:
            model.model.load_state_dict(foveal.models.unwrap(source).state_dict())
        except RuntimeError as exc:
            raise ValueError(
                f"init checkpoint {job.init!r} does not fit this model: {exc}"
            ) from None
        # Keep the normalisation the initial weights were trained with.
        mean, std = init_meta.get("mean", mean), init_meta.get("std", std)
        model.mean.copy_(torch.tensor(mean).reshape(1, -1, 1, 1))
        model.std.copy_(torch.tensor(std).reshape(1, -1, 1, 1))
    meta = {
        "arch": arch,
        "arch_kwargs": kwargs,
        "num_classes": train.num_classes,
        "in_channels": c,
        "input_shape": [c, h, w],
        "mean": mean,
        "std": std,
        "classes": train.classes,
        "dataset": {"name": job.data, "size": h, "n_train": len(train), "n_test": len(test)},
        "init": job.init,
    }
    recipe = build_recipe(job.recipe, epochs=job.training.epochs)
    return fit(
        model, train, config=job.training, recipe=recipe, eval_data=test, out_dir=job.out,
        meta=meta, resume=resume, progress=progress,
    )  # fmt: skip
