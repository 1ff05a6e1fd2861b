"""Validated job descriptions shared by the CLI and the Python API.

A job is data, never code: YAML/JSON files are parsed with ``yaml.safe_load`` and validated by
pydantic models that reject unknown keys with a message naming the key. The ``recipe`` of a
:class:`TrainJob` is validated by the settings class its ``method`` registered in
:data:`foveal.defenses.RECIPES`.

Example:
    >>> job = TrainJob(recipe={"method": "dual", "eps": "4/255", "eps_bg": "20/255"})
    >>> job.recipe.eps_bg == 20 / 255
    True
    >>> job.model_dump()["recipe"]["method"]
    'dual'
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator
from pydantic_core import PydanticCustomError

from foveal._validation import format_validation_error
from foveal.defenses import RECIPES
from foveal.training import RecipeSettings, StandardSettings, TrainConfig

__all__ = [
    "DEFAULT_ARCH",
    "TrainJob",
    "format_validation_error",
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
    recipe: SerializeAsAny[RecipeSettings] = Field(
        default_factory=StandardSettings,
        description="the recipe's method and settings (`foveal list recipes`)",
    )

    @field_validator("recipe", mode="before")
    @classmethod
    def _recipe_settings(cls, value: Any) -> Any:
        """Validate the settings against the settings class of their ``method``."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return value
        try:
            settings = RECIPES.get(value.get("method", "standard"))
        except ValueError as exc:
            message = {"message": str(exc)}
            raise PydanticCustomError("unknown_recipe", "{message}", message) from None
        method = settings.model_fields["method"].default  # the registered spelling
        return settings.model_validate({**value, "method": method})


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
    if "input_size" in inspect.signature(foveal.models.ARCHITECTURES.get(arch)).parameters:
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
    recipe = job.recipe.build(epochs=job.training.epochs)
    return fit(
        model, train, config=job.training, recipe=recipe, eval_data=test, out_dir=job.out,
        meta=meta, resume=resume, progress=progress,
    )  # fmt: skip
