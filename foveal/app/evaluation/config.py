"""The settings of ``foveal evaluate``: three presets and a validated config (YAML/JSON/TOML).

A config file is data, never code. It is parsed with ``yaml.safe_load`` (YAML and JSON) or
``tomllib`` (TOML), deep-merged over a preset (``quick``, ``default`` or ``full``) and validated
by pydantic models that reject unknown keys and bad values with messages naming the key::

    dual.eps_fgg: unknown key (got [0.0156])
    pgd.steps: Input should be greater than or equal to 1 (got 0)

Budgets may be written as fractions (``"8/255"``). Lists replace the preset's list entirely.
The top level (data, ``n``, seed, models, ``headline``, ...) is :class:`EvaluateConfig`'s own;
every other section is a family's (its ``Section`` and ``presets``, next to its code).
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from foveal._validation import parse_fraction
from foveal.registry import Registry

__all__ = [
    "FAMILIES",
    "EvaluateConfig",
    "Section",
    "budget_label",
    "build_config",
    "load_config_file",
    "preset",
]

#: Every evaluation family (a :class:`~foveal.app.evaluation.family.Family`) by name; the
#: config reads each one's ``Section`` and ``presets``.
FAMILIES: Registry[Any] = Registry("evaluation family")


def _fraction(value: object) -> object:
    if isinstance(value, str):
        return parse_fraction(value, "budget")
    return value


#: A number that may be written as a fraction such as ``"8/255"``; a budget is non-negative.
Fraction = Annotated[float, BeforeValidator(_fraction)]
Budget = Annotated[Fraction, Field(ge=0, allow_inf_nan=False)]
Weight = Annotated[Fraction, Field(allow_inf_nan=False)]
MaskSource = Literal["auto", "ground-truth", "fixation"]


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class HeadlineSection(Section):
    """Which cells the headline table compares (see docs/evaluate.md, "The headline")."""

    linf_eps: Budget = 8 / 255
    l2_eps: Budget = 0.5
    sai_delta: Budget = 4.0


def _details(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[Any]:
    return [
        {"type": e["type"], "loc": (*prefix, *e["loc"]), "input": e["input"]}
        | ({"ctx": e["ctx"]} if "ctx" in e else {})
        for e in exc.errors()
    ]


class EvaluateConfig(Section):
    """Everything ``foveal evaluate`` runs; unknown keys are errors. The section of each family
    of :data:`FAMILIES` is the attribute of its name (``config.pgd``)."""

    model_config = ConfigDict(extra="allow")

    preset: Literal["quick", "default", "full"] = "default"
    data: str = "shapes"
    split: Literal["train", "test"] = "test"
    n: int = Field(200, ge=1, description="number of evaluation images")
    size: int | None = Field(None, ge=8, description="image side (default: the model's)")
    data_root: str | None = None
    batch_size: int = Field(200, ge=1)
    seed: int = Field(0, ge=0, description="seed of every attack's randomness")
    examples: int = Field(8, ge=0, le=16, description="images per example grid")
    models: list[str] = Field(default_factory=list, description="checkpoints (empty: built-in)")
    surrogates: list[str] = Field(default_factory=list)
    detectors: list[str] = Field(default_factory=list)
    headline: HeadlineSection = Field(default_factory=HeadlineSection)

    @model_validator(mode="wrap")
    @classmethod
    def _sections(cls, data: Any, handler: Any) -> Any:
        """Validate each family's section with its model; any other unknown key is an error."""
        if not isinstance(data, Mapping):
            return handler(data)
        raw, errors, sections = dict(data), [], {}
        for name in sorted(FAMILIES, key=lambda f: FAMILIES.get(f).order):
            schema = FAMILIES.get(name).Section
            if schema is not None:
                try:
                    sections[name] = schema.model_validate(raw.pop(name, {}))
                except ValidationError as exc:
                    errors += _details(exc, (name,))
        unknown = [k for k in raw if k not in cls.model_fields]
        errors += [{"type": "extra_forbidden", "loc": (k,), "input": raw.pop(k)} for k in unknown]
        try:
            config = handler(raw)
        except ValidationError as exc:
            errors = _details(exc) + errors
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        for name, section in sections.items():
            setattr(config, name, section)
        return config


#: The top-level overrides of each preset (each family adds its section's, ``Family.presets``).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"n": 48, "examples": 6},
    "default": {},
    "full": {"n": 500},
}


def preset(name: str) -> dict[str, Any]:
    """A deep copy of preset ``name``'s overrides, the families' sections included."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
    sections = {f: FAMILIES.get(f).presets.get(name) for f in FAMILIES}
    return copy.deepcopy({**PRESETS[name], **{f: s for f, s in sections.items() if s}})


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def build_config(
    overrides: Mapping[str, Any] | None = None, *, preset_name: str | None = None
) -> EvaluateConfig:
    """Validate ``overrides`` merged over a preset.

    The preset is ``preset_name`` if given, else ``overrides["preset"]``, else ``default``.

    Raises:
        pydantic.ValidationError: unknown keys or bad values (use
            :func:`foveal.app.jobs.format_validation_error` for a one-line message).
    """
    raw = dict(overrides or {})
    name = preset_name or raw.get("preset") or "default"
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
    merged = _merge(preset(name), raw)
    merged["preset"] = name
    return EvaluateConfig(**merged)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML, JSON or TOML config file (by suffix; ``.toml`` is TOML) into plain data."""
    p = Path(path)
    if p.suffix.lower() != ".toml":
        from foveal.app.jobs import load_config_file as load_yaml

        return load_yaml(p)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    try:
        tomllib = importlib.import_module("tomllib")
    except ModuleNotFoundError:  # Python 3.10
        try:
            tomllib = importlib.import_module("tomli")
        except ModuleNotFoundError:
            raise ValueError(
                f"config file {str(p)!r}: reading TOML needs Python >= 3.11 or the tomli package"
            ) from None
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    return data


def budget_label(eps: float, norm: str = "linf") -> str:
    """``8/255`` for Linf budgets that are whole multiples of 1/255, else ``0.5``."""
    if norm == "linf":
        k = eps * 255
        if math.isclose(k, round(k), abs_tol=1e-6):
            return "0" if round(k) == 0 else f"{round(k)}/255"
    return f"{eps:g}"
