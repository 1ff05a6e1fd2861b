"""``sai``: SAI-FGM vs I-FGM over the delta grid, plain and after each input transform (Dong et al.
2020): delta in {2, 4, 8} (0-255 units, L2 budget delta * sqrt(N) / 255), T = 10, phi = 4/12, merge
beta = 2, superpixel side 2 px (Dong et al.'s (2020) S = 5 is for 299-px images), gray-box under
resizing, JPEG, DNN-oriented JPEG, average / max pooling, TVM and bit-depth reduction (Fig. 4-6,
Table 3). Records add ``transforms``: the model's results behind each transform on the same
images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from foveal.app.evaluation.cells import CellContext, Run, attack_record, mean
from foveal.app.evaluation.config import Budget, EvaluateConfig, Fraction, Section
from foveal.app.evaluation.families.pgd import INSIDE, containing_pgd
from foveal.app.evaluation.family import Cell, Curve, Family, Presets, closest, register
from foveal.app.evaluation.render import e, img, pct, pyplot, save, table
from foveal.app.evaluation.results import Record, Results
from foveal.app.evaluation.sanity import Comparison, Point

__all__ = ["SaiRecord", "SaiSection", "TransformSpec", "transform_results"]


class TransformSpec(Section):
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


class SaiSection(Section):
    """SAI-FGM vs I-FGM over the delta grid, plain and after each transform (Dong et al. 2020)."""

    enabled: bool = True
    deltas: list[Budget] = Field(default_factory=lambda: [2.0, 4.0, 8.0])
    steps: int = Field(10, ge=1)
    size: float = Field(2.0, ge=1, description="superpixel side S in pixels")
    beta: float = Field(2.0, ge=0, description="superpixel merge threshold (0-255 units)")
    phi: Fraction = Field(4 / 12, ge=0, le=1, description="attention binarisation factor")
    baseline: bool = Field(True, description="also run I-FGM with the same L2 budget")
    transforms: list[TransformSpec] = Field(default_factory=_default_transforms)


@dataclass
class SaiRecord(Record):
    """A ``sai`` record: per transform label, accuracy, clean accuracy and success rate."""

    transforms: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "transforms": self.transforms}


def transform_results(record: Record) -> list[tuple[str, dict[str, Any]]]:
    """``(label, results)`` of a ``sai`` record's transforms, in the config's order (the first
    entry, ``none``, is the plain model)."""
    stored = getattr(record, "transforms", {})
    labels = [TransformSpec(**t).label for t in record.settings.get("transforms", [])]
    labels += [lb for lb in stored if lb not in labels]
    plain = {k: record.metrics.get(k) for k in ("accuracy", "success_rate")}
    return [("none", plain)] + [(lb, stored[lb]) for lb in labels if lb in stored]


_TEXT = {"ha": "center", "va": "bottom", "fontsize": 8}
_QUICK = [{"name": "resize", "params": {"gamma": 0.5}}, {"name": "jpeg", "params": {"quality": 75}}]


@register
class Sai(Family[SaiSection]):
    """SAI-FGM (superpixel-guided, CAM-cropped) and I-FGM, under transforms (Dong et al. 2020)."""

    name, order, Section, record_type = "sai", 50, SaiSection, SaiRecord
    presets: ClassVar[Presets] = {"quick": {"deltas": [4.0], "steps": 5, "transforms": _QUICK}}
    NOTE: ClassVar[str] = "SAI-FGM / I-FGM: delta * sqrt(C*H*W) / 255"
    CURVES: ClassVar[dict[str, Curve]] = {
        "i-fgm": Curve("I-FGM", "l2", "#ff7f0e", 2, note=NOTE),
        "sai-fgm": Curve("SAI-FGM", "l2", "#d62728", 3, note=NOTE),
    }

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        s = self.section(config)
        if not s.enabled:
            return []
        transforms = [t.model_dump() for t in s.transforms]
        show = closest(s.deltas, config.headline.sai_delta)
        out = []
        for delta in s.deltas:
            common = {"delta": delta, "steps": s.steps, "transforms": transforms}
            sai = {"attack": "sai-fgm", **common, "size": s.size, "beta": s.beta, "phi": s.phi}
            out.append(Cell(self.name, model, sai, f"SAI-FGM delta={delta:g}", delta == show))
            if s.baseline:
                ifgm = {"attack": "i-fgm", **common}
                out.append(Cell(self.name, model, ifgm, f"I-FGM delta={delta:g}", delta == show))
        return out

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        from foveal.attacks import BIM, SAIFGM, sai_budget
        from foveal.defenses import InputTransform

        s, model = cell.settings, ctx.models[cell.model]
        eps = sai_budget(s["delta"], ctx.images.shape)
        args = {k: v for k, v in s.items() if k not in ("attack", "transforms")}  # SAI-FGM's
        if s["attack"] == "sai-fgm":
            attack: Any = SAIFGM(model, **args, seed=ctx.seed)
        else:
            attack = BIM(model, norm="l2", eps=eps, steps=s["steps"], seed=ctx.seed)
        run = Run.of(ctx, attack)
        record = attack_record(ctx, cell, key, attack, run, record_type=SaiRecord)
        assert isinstance(record, SaiRecord)
        record.metrics["l2_budget"] = eps
        y = ctx.labels
        for raw in s["transforms"]:
            spec = TransformSpec(**raw)
            defended = InputTransform(model, spec.build())
            clean_ok = ctx.predict(defended, ctx.images) == y
            adv_ok = ctx.predict(defended, run.adversarial) == y
            record.transforms[spec.label] = {
                "accuracy": mean(adv_ok),
                "clean_accuracy": mean(clean_ok),
                "success_rate": mean(~adv_ok[clean_ok]),
            }
        return record

    def headline(self, record: Record, config: EvaluateConfig) -> str | None:
        s = record.settings
        ok = s["attack"] == "sai-fgm" and s["delta"] <= config.headline.sai_delta + 1e-9
        return "unsuspicious" if ok else None

    def series(self, record: Record) -> list[tuple[tuple[Any, ...], str, Point]]:
        s = record.settings
        group = (record.model, self.name, s["attack"])
        return [(group, s["attack"], self.point(record, s["delta"], f"delta={s['delta']:g}"))]

    def stronger(self, record: Record, records: Sequence[Record]) -> list[Comparison]:
        budget = record.metrics.get("l2_budget")
        if budget is None:
            return []
        pgd = containing_pgd(records, record.model, "l2", budget)
        return self.compare(record, pgd, INSIDE)

    def curve(self, record: Record, config: EvaluateConfig) -> tuple[Curve, float] | None:
        return self.CURVES[record.settings["attack"]], record.metrics["l2_budget"]

    # ---------------------------------------------------------------- report
    def charts(self, results: Results, directory: Path) -> dict[str, Path]:
        path = self._transforms_chart(results, directory / "transforms.png")
        return {} if path is None else {"transforms": path}

    def html(self, results: Results, figures: dict[str, Path]) -> str:
        body = [
            "<h2>SAI-FGM vs I-FGM under input transforms (gray-box)</h2>",
            '<p class="note">Success rate: among the images the model behind the transform '
            "classifies correctly when clean, the fraction whose adversarial version it "
            "misclassifies. The adversarial images are computed on the undefended model.</p>",
        ]
        if "transforms" in figures:
            body.append(img(figures["transforms"], "SAI-FGM vs I-FGM under transforms"))
        for model in results.models:
            recs = results.select(model, self.name)
            labels = [label for label, _ in transform_results(recs[0])] if recs else []
            rows = [
                [e(r.label)] + [e(pct(v.get("success_rate"))) for v in self._row(r, labels)]
                for r in recs
            ]
            html = table(["attack", *[e(lb) for lb in labels]], rows)
            body += (
                [f"<h3>{e(model)}: success rate per delta and transform</h3>{html}"] if recs else []
            )
        return "".join(body)

    @staticmethod
    def _row(record: Record, labels: list[str]) -> list[dict[str, Any]]:
        values = dict(transform_results(record))
        return [values.get(lb) or {} for lb in labels]

    def _transforms_chart(self, results: Results, path: Path) -> Path | None:
        """Gray-box success rate of SAI-FGM vs I-FGM, plain and after each transform."""
        deltas = sorted({r.settings["delta"] for r in results.select(family=self.name)})
        delta = closest(deltas, results.config.headline.sai_delta)
        if delta is None:
            return None
        import numpy as np

        panels = []
        for model in results.models:
            recs = results.select(model, self.name, delta=delta)
            rows = {self.CURVES[r.settings["attack"]].name: transform_results(r) for r in recs}
            panels += [(model, rows)] if rows else []
        if not panels:
            return None
        plt = pyplot()
        k = len(panels)
        fig, axes = plt.subplots(k, 1, figsize=(12, 3.6 * k), squeeze=False)
        colors = {c.name: c.color for c in self.CURVES.values()}
        for ax, (model, rows) in zip(axes[:, 0], panels, strict=True):
            labels = [lb for lb, _ in next(iter(rows.values()))]
            x, width = np.arange(len(labels)), 0.8 / len(rows)
            for i, name in enumerate(sorted(rows, key=lambda n: n != "SAI-FGM")):
                values = dict(rows[name])
                ys = [100 * ((values.get(lb) or {}).get("success_rate") or 0.0) for lb in labels]
                offset = (i - (len(rows) - 1) / 2) * width
                bars = ax.bar(x + offset, ys, width, label=name, color=colors[name])
                for bar, y in zip(bars, ys, strict=True):
                    ax.text(bar.get_x() + bar.get_width() / 2, y + 1, f"{y:.0f}", **_TEXT)
            ax.set_xticks(x, labels, rotation=15, ha="right")
            ax.set_ylim(0, 112)
            ax.set_ylabel("success rate (%)")
            ax.set_title(
                f"{model}: gray-box attack success after each input transform (delta = {delta:g})"
            )
            ax.legend(loc="upper right", frameon=False, ncols=2)
        fig.tight_layout()
        return save(fig, path)
