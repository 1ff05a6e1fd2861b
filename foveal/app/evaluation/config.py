"""The settings of ``foveal evaluate``: three presets and a validated config (YAML/JSON/TOML).

A config file is data, never code. It is parsed with ``yaml.safe_load`` (YAML and JSON) or
``tomllib`` (TOML), deep-merged over a preset (``quick``, ``default`` or ``full``) and validated
by pydantic models that reject unknown keys and bad values with messages naming the key::

    dual.eps_fgg: unknown key (got [0.0156])
    pgd.steps: Input should be greater than or equal to 1 (got 0)

Budgets may be written as fractions (``"8/255"``). Lists replace the preset's list entirely.

Where the default grids come from:

- PGD Linf / L2 sweeps: the usual budgets of the robustness literature around 8/255 and 0.5;
- dual-perturbation (seed 000): Linf, eps_F in {0, 2, 4, 8}/255 x eps_B in {0, 10, 20, 40}/255
  with lambda = 1 (its Fig. 5 / 15 settings around {4/255, 20/255}), and the lambda sweep at
  {eps_F, eps_B} = {4/255, 20/255} (Fig. 3 / 15);
- SAI-FGM vs I-FGM (seed 001): delta in {2, 4, 8} (0-255 units, L2 budget delta * sqrt(N)),
  T = 10, phi = 4/12, merge beta = 2, superpixel side 2 px (seed 001's S = 5 is for 299-px
  images), gray-box under resizing, JPEG, DNN-oriented JPEG, average / max pooling, TVM and
  bit-depth reduction (Fig. 4-6, Table 3);
- SIP (seed 003): PGD with the salient pixels frozen at 4/255 and 8/255;
- perceptual ball (seed 004): Linf 8/255, 20 L-BFGS steps;
- AutoAttack (``full`` only): Linf 1, 2, 4, 8 /255 (seed 003's evaluation budgets).
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from foveal._validation import parse_fraction

__all__ = [
    "PRESETS",
    "EvaluateConfig",
    "TransformSpec",
    "budget_label",
    "build_config",
    "load_config_file",
    "preset",
]


def _fraction(value: object) -> object:
    if isinstance(value, str):
        return parse_fraction(value, "budget")
    return value


#: A non-negative budget; accepts numbers and fractions such as ``"8/255"``.
Budget = Annotated[float, BeforeValidator(_fraction), Field(ge=0, allow_inf_nan=False)]
Weight = Annotated[float, BeforeValidator(_fraction), Field(allow_inf_nan=False)]
MaskSource = Literal["auto", "ground-truth", "fixation"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PGDSection(_Section):
    """PGD over an eps grid, Linf and L2 (the standard Lp evaluation)."""

    enabled: bool = True
    linf: list[Budget] = Field(default_factory=lambda: [e / 255 for e in (1, 2, 4, 8, 16)])
    l2: list[Budget] = Field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    steps: int = Field(10, ge=1)
    restarts: int = Field(1, ge=1)


class DualSection(_Section):
    """The dual-perturbation attack of seed 000: an eps_F x eps_B grid and a lambda sweep."""

    enabled: bool = True
    norm: Literal["linf", "l2"] = "linf"
    eps_fg: list[Budget] = Field(default_factory=lambda: [e / 255 for e in (0, 2, 4, 8)])
    eps_bg: list[Budget] = Field(default_factory=lambda: [e / 255 for e in (0, 10, 20, 40)])
    lam: Weight = Field(1.0, description="lambda of the grid cells")
    lambdas: list[Weight] = Field(default_factory=lambda: [0.0, 0.1, 1.0, 10.0])
    sweep_eps_fg: Budget = 4 / 255
    sweep_eps_bg: Budget = 20 / 255
    steps: int = Field(10, ge=1)
    masks: MaskSource = "auto"


class TransformSpec(_Section):
    """One input transform of the gray-box rows: a name from ``foveal.defenses.TRANSFORMS``."""

    name: str
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from foveal.defenses import TRANSFORMS

        if value not in TRANSFORMS:
            TRANSFORMS.get(value)  # raises with the closest names
        return value.lower()

    def build(self) -> Any:
        """The transform module (``TVM`` gets a fixed seed so that results are reproducible)."""
        from foveal.defenses import make_transform

        params: dict[str, Any] = dict(self.params)
        if self.name == "tvm":
            params.setdefault("seed", 0)
        return make_transform(self.name, **params)

    @model_validator(mode="after")
    def _buildable(self) -> TransformSpec:
        try:
            self.build()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"transform {self.name!r}: {exc}") from None
        return self

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})"


def _default_transforms() -> list[TransformSpec]:
    return [
        TransformSpec(name="resize", params={"gamma": 0.5}),
        TransformSpec(name="jpeg", params={"quality": 75}),
        TransformSpec(name="dnn-jpeg"),
        TransformSpec(name="avg-pool", params={"k": 3}),
        TransformSpec(name="max-pool", params={"k": 3}),
        TransformSpec(name="tvm", params={"p": 0.5, "weight": 0.03}),
        TransformSpec(name="bit-depth", params={"bits": 3}),
    ]


class SaiSection(_Section):
    """SAI-FGM vs I-FGM over the delta grid, plain and after each input transform (seed 001)."""

    enabled: bool = True
    deltas: list[Budget] = Field(default_factory=lambda: [2.0, 4.0, 8.0])
    steps: int = Field(10, ge=1)
    size: float = Field(2.0, ge=1, description="superpixel side S in pixels")
    beta: float = Field(2.0, ge=0, description="superpixel merge threshold (0-255 units)")
    phi: Annotated[float, BeforeValidator(_fraction)] = Field(
        4 / 12, ge=0, le=1, description="attention binarisation factor"
    )
    baseline: bool = Field(True, description="also run I-FGM with the same L2 budget")
    transforms: list[TransformSpec] = Field(default_factory=_default_transforms)


class PerceptualSection(_Section):
    """The perceptual-ball attack of seed 004."""

    enabled: bool = True
    eps: list[Budget] = Field(default_factory=lambda: [8 / 255])
    steps: int = Field(20, ge=1)


class SipSection(_Section):
    """PGD with the salient pixels frozen (the SIP set of seed 003)."""

    enabled: bool = True
    eps: list[Budget] = Field(default_factory=lambda: [4 / 255, 8 / 255])
    steps: int = Field(10, ge=1)
    masks: MaskSource = "auto"


class AutoAttackSection(_Section):
    """AutoAttack-style worst-case ensemble (``--full``)."""

    enabled: bool = False
    norm: Literal["linf", "l2"] = "linf"
    eps: list[Budget] = Field(default_factory=lambda: [e / 255 for e in (1, 2, 4, 8)])
    steps: int = Field(100, ge=1)
    n_queries: int = Field(5000, ge=1)


_TRANSFER_ATTACKS: list[Literal["pgd", "dual"]] = ["pgd", "dual"]


class TransferSection(_Section):
    """Transfer from surrogate checkpoints (used only when surrogates are given)."""

    attacks: list[Literal["pgd", "dual"]] = Field(default_factory=lambda: _TRANSFER_ATTACKS.copy())
    eps: Budget = 8 / 255
    eps_fg: Budget = 4 / 255
    eps_bg: Budget = 20 / 255
    steps: int = Field(10, ge=1)


class HeadlineSection(_Section):
    """Which cells the headline table compares (see docs/evaluate.md, "The headline")."""

    linf_eps: Budget = 8 / 255
    l2_eps: Budget = 0.5
    sai_delta: Budget = 4.0


class EvaluateConfig(_Section):
    """Everything ``foveal evaluate`` runs; unknown keys are errors."""

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
    pgd: PGDSection = Field(default_factory=PGDSection)
    dual: DualSection = Field(default_factory=DualSection)
    sai: SaiSection = Field(default_factory=SaiSection)
    perceptual: PerceptualSection = Field(default_factory=PerceptualSection)
    sip: SipSection = Field(default_factory=SipSection)
    autoattack: AutoAttackSection = Field(default_factory=AutoAttackSection)
    transfer: TransferSection = Field(default_factory=TransferSection)
    headline: HeadlineSection = Field(default_factory=HeadlineSection)


#: Overrides of each preset over the schema's defaults (the ``default`` preset is the schema).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "n": 48,
        "examples": 6,
        "pgd": {"linf": [4 / 255, 8 / 255], "l2": [0.5, 1.0], "steps": 5},
        "dual": {
            "eps_fg": [0.0, 4 / 255],
            "eps_bg": [4 / 255, 20 / 255],
            "lambdas": [0.0, 1.0],
            "steps": 5,
        },
        "sai": {
            "deltas": [4.0],
            "steps": 5,
            "transforms": [
                {"name": "resize", "params": {"gamma": 0.5}},
                {"name": "jpeg", "params": {"quality": 75}},
            ],
        },
        "perceptual": {"eps": [8 / 255], "steps": 5},
        "sip": {"eps": [8 / 255], "steps": 5},
    },
    "default": {},
    "full": {
        "n": 500,
        "autoattack": {"enabled": True},
    },
}


def preset(name: str) -> dict[str, Any]:
    """A deep copy of preset ``name``'s overrides."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
    return copy.deepcopy(PRESETS[name])


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
