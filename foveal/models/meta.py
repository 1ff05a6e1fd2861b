"""The schema of a checkpoint's description: what :func:`foveal.models.load` trusts of it.

A checkpoint's metadata is untrusted input, like an image: its fields choose and size the model
that gets built. :class:`ModelMeta` bounds every field that does (types, ranges, an upper bound
on every size); :func:`validate_meta` turns a failure into a :class:`CheckpointError` that
names the file and the key.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["MAX_PARAMETERS", "CheckpointError", "ModelMeta", "validate_meta"]


class CheckpointError(ValueError):
    """Raised when a path is not a readable foveal checkpoint."""


#: Upper bounds on what a checkpoint's description may ask for.
MAX_CLASSES = 100_000
MAX_CHANNELS = 64
MAX_SIDE = 8192
MAX_KWARG = 65_536
MAX_PARAMETERS = 4_000_000_000

_KwargValue = bool | int | float | str | None


class ModelMeta(BaseModel):
    """The validated part of a checkpoint's description (other keys pass through unchecked:
    ``dataset``, ``recipe``, ``metrics``, ... are reported, never used to build the model).

    Example:
        >>> ModelMeta(arch="shapes-cnn", num_classes=10).in_channels
        3
    """

    model_config = ConfigDict(extra="allow", strict=True)

    arch: str
    arch_kwargs: dict[str, _KwargValue] = Field(default_factory=dict)
    num_classes: int = Field(10, ge=2, le=MAX_CLASSES)
    in_channels: int = Field(3, ge=1, le=MAX_CHANNELS)
    input_shape: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    normalized: bool = True

    @field_validator("arch")
    @classmethod
    def _registered(cls, value: str) -> str:
        from foveal.models.architectures import ARCHITECTURES

        ARCHITECTURES.get(value)  # raises naming the closest architectures
        return value

    @field_validator("arch_kwargs")
    @classmethod
    def _bounded(cls, value: dict[str, _KwargValue]) -> dict[str, _KwargValue]:
        for key, v in value.items():
            if key in ("num_classes", "in_channels"):
                continue  # older checkpoints kept them here; the fields above bound them
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if not (abs(v) <= MAX_KWARG):
                    raise ValueError(f"{key!r} must be at most {MAX_KWARG} in size; got {v!r}")
        return value

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (len(value) != 3 or not all(1 <= v <= MAX_SIDE for v in value)):
            raise ValueError(f"must be [C, H, W] with each in [1, {MAX_SIDE}]; got {value!r}")
        return value

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not all(abs(v) < 1e6 for v in value):
            raise ValueError(f"must hold finite values; got {value!r}")
        return value

    def checked(self) -> ModelMeta:
        """Cross-field checks: normalisation statistics match the channels, std > 0."""
        for key in ("mean", "std"):
            stats = getattr(self, key)
            if stats is not None and len(stats) != self.in_channels:
                raise ValueError(
                    f"{key}: needs one value per input channel ({self.in_channels}); got "
                    f"{len(stats)} values"
                )
        if self.std is not None and min(self.std, default=1.0) <= 0:
            raise ValueError(f"std: must be > 0; got {self.std!r}")
        return self


def validate_meta(meta: object, where: str | os.PathLike[str]) -> ModelMeta:
    """``meta`` as a :class:`ModelMeta`; :class:`CheckpointError` naming ``where`` and the key."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: checkpoint metadata must be a JSON object")
    data = dict(meta)
    kwargs = data.get("arch_kwargs")
    if isinstance(kwargs, dict):  # older checkpoints keep the sizes among the keywords
        data.setdefault("in_channels", kwargs.get("in_channels", 3))
        data.setdefault("num_classes", kwargs.get("num_classes", 10))
    for key in ("in_channels", "num_classes"):
        if data.get(key) is None:
            data.pop(key, None)
    try:
        return ModelMeta(**data).checked()
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        raise CheckpointError(
            f"{where}: checkpoint metadata key {key!r}: {msg} (got {err.get('input')!r})"
        ) from None
    except ValueError as exc:
        raise CheckpointError(f"{where}: checkpoint metadata key {exc}") from None
